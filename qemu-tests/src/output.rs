//! What the guest printed: unattended-mode script sections (framed by the
//! markers of the `scriptmark` crate, the same code rescue-init prints
//! them with), `probe --json` documents, and choice numbers on menu
//! screens.

use crate::config::VmConfig;
use crate::fixtures::Image;
use crate::vm::{Vm, BOOT_TIMEOUT};
use std::time::Duration;

/// One command's framed output from an unattended run.
pub use testkit::scriptmark::Section as ScriptSection;

/// Splits a console transcript into the script's sections (see the README's
/// unattended-mode contract). Carriage returns are removed.
pub fn parse_sections(transcript: &str) -> Vec<ScriptSection> {
    testkit::scriptmark::parse(transcript)
}

/// Boots, runs `script` unattended, waits for power-off; returns the sections.
pub fn run_script(image: &Image, cfg: VmConfig, script: &str) -> (Vec<ScriptSection>, String) {
    let cfg = cfg.script(script);
    let mut vm = Vm::start(image, &cfg);
    vm.wait_for(testkit::scriptmark::DONE, BOOT_TIMEOUT);
    vm.wait_exit(Duration::from_secs(60));
    let t = vm.transcript();
    (parse_sections(&t), t)
}

/// The JSON document a `probe --json` section printed.
pub fn probe_json(section: &ScriptSection) -> serde_json::Value {
    let start = section
        .output
        .find('{')
        .unwrap_or_else(|| panic!("no JSON in probe output:\n{}", section.output));
    let end = section.output.rfind('}').expect("JSON end");
    serde_json::from_str(&section.output[start..=end])
        .unwrap_or_else(|e| panic!("bad JSON ({e}):\n{}", section.output))
}

/// The disk with this serial (or kernel name) in a `probe --json` document.
pub fn disk_named<'a>(
    probe: &'a serde_json::Value,
    serial_or_name: &str,
) -> Option<&'a serde_json::Value> {
    probe["disks"].as_array()?.iter().find(|d| {
        d["serial"].as_str() == Some(serial_or_name) || d["name"].as_str() == Some(serial_or_name)
    })
}

/// The number of the ESXi slot repair the menu's GPT view offers.
pub fn esxi_repair_choice(view: &str) -> String {
    view.lines()
        .filter(|l| l.contains("ESXi"))
        .filter_map(|l| l.split_whitespace().next())
        .find(|w| w.parse::<u32>().is_ok())
        .unwrap_or_else(|| panic!("no ESXi repair offered:\n{view}"))
        .to_string()
}

/// The number a menu screen shows in front of the first line containing
/// `needle` (menus number their choices in the first column).
pub fn menu_number(screen: &str, needle: &str) -> String {
    screen
        .lines()
        .find(|l| l.contains(needle))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no {needle:?} in:\n{screen}"))
        .to_string()
}

/// The first JSON object in `out` that starts a line, pretty-printed or
/// not (console lines may follow it).
pub fn json_of(out: &str) -> serde_json::Value {
    let mut at = 0;
    for line in out.split_inclusive('\n') {
        if line.starts_with('{') {
            let mut values = serde_json::Deserializer::from_str(&out[at..]).into_iter();
            if let Some(Ok(v)) = values.next() {
                return v;
            }
        }
        at += line.len();
    }
    panic!("no JSON object in: {out}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_are_split_by_markers() {
        let t = "noise\r\n=== rescue: probe --json ===\r\n{\"a\":1}\r\n=== end: probe --json (exit 0) ===\r\n\
                 === rescue: bad ===\r\nerr\r\n=== end: bad (exit 2) ===\r\n=== rescue.script done ===\r\n";
        let s = parse_sections(t);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].command, "probe --json");
        assert_eq!(s[0].output, "{\"a\":1}\n");
        assert_eq!(s[0].exit, 0);
        assert_eq!(probe_json(&s[0])["a"], 1);
        let doc = serde_json::json!({"disks": [{"name": "sda", "serial": "S1"}]});
        assert_eq!(disk_named(&doc, "S1").unwrap()["name"], "sda");
        assert_eq!(disk_named(&doc, "sda").unwrap()["serial"], "S1");
        assert!(disk_named(&doc, "sdb").is_none());
        assert_eq!(s[1].exit, 2);
    }
}
