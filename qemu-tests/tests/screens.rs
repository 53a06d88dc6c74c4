//! Every menu screen on the demo disk set fits an 80x24 console's width
//! (79 columns, one spare so a terminal that wraps at the last column adds
//! no blank lines) and says "1 finding", not "1 findings": the overview,
//! each disk's detail, the GPT view with a repair plan, the datastore list
//! and a folder, the imaging source and destination choices, the md
//! arrays with one array's verify, and the action log. Nothing is written
//! (every answer backs out); the disks are unchanged.

use qemu_tests::*;
use std::time::Duration;

const T: Duration = Duration::from_secs(120);

#[test]
fn every_demo_menu_screen_fits_79_columns_with_right_plurals() {
    let image = Image::built();
    let dir = temp_dir("screens");
    let disks = demo::demo_disks(dir.path(), true).expect("demo disks");
    let hashes: Vec<String> = disks.iter().map(|d| sha256_file(&d.path)).collect();
    let mut vm = Vm::start(&image, &VmConfig::new(disks.clone()));
    let mut screens: Vec<(String, String)> = Vec::new();
    let overview = vm.wait_for("Choose: ", BOOT_TIMEOUT);
    let from = overview.rfind("=== rescue").unwrap_or(0);
    screens.push(("overview".into(), overview[from..].to_string()));
    // Sends `send`, waits for `until`, keeps what came as screen `what`.
    fn step(
        vm: &mut Vm,
        screens: &mut Vec<(String, String)>,
        what: &str,
        send: &str,
        until: &str,
    ) -> String {
        vm.send(send);
        let s = vm.wait_for(until, T);
        screens.push((what.to_string(), s.clone()));
        s
    }
    let n = overview
        .lines()
        .filter(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            w.len() > 2
                && w[0].parse::<usize>().is_ok()
                && w[1].chars().all(|c| c.is_ascii_alphanumeric())
        })
        .count();
    assert!(n >= 6, "{overview}");
    for i in 1..=n {
        let detail = step(
            &mut vm,
            &mut screens,
            &format!("disk {i}"),
            &format!("{i}\n"),
            "back to the overview: ",
        );
        if detail.contains("RAID-LD") && detail.contains("g: GPT findings") {
            let view = step(
                &mut vm,
                &mut screens,
                "GPT view",
                "g\n",
                "Repair choice (Enter: back): ",
            );
            let choice = esxi_repair_choice(&view);
            step(
                &mut vm,
                &mut screens,
                "GPT plan",
                &format!("{choice}\n"),
                "anything else cancels: ",
            );
            step(
                &mut vm,
                &mut screens,
                "GPT cancelled",
                "no\n",
                "Repair choice (Enter: back): ",
            );
        }
        step(&mut vm, &mut screens, "overview", "\n", "Choose: ");
    }
    let stores = step(
        &mut vm,
        &mut screens,
        "datastores",
        "d\n",
        "Datastore (Enter: back): ",
    );
    let root = step(
        &mut vm,
        &mut screens,
        "datastore root",
        &format!("{}\n", menu_number(&stores, "\"vmfs5\"")),
        "Enter: back: ",
    );
    step(
        &mut vm,
        &mut screens,
        "datastore folder",
        &format!("{}\n", menu_number(&root, "directory/")),
        "Enter: back: ",
    );
    step(
        &mut vm,
        &mut screens,
        "datastore root",
        "u\n",
        "Enter: back: ",
    );
    step(&mut vm, &mut screens, "overview", "\n", "Choose: ");
    let sources = step(
        &mut vm,
        &mut screens,
        "image sources",
        "i\n",
        "Source (Enter: back): ",
    );
    step(
        &mut vm,
        &mut screens,
        "image destinations",
        &format!("{}\n", menu_number(&sources, "nvme0n1")),
        "Destination (Enter: back): ",
    );
    step(&mut vm, &mut screens, "overview", "\n", "Choose: ");
    let arrays = step(
        &mut vm,
        &mut screens,
        "md arrays",
        "m\n",
        "(Enter: back to the overview): ",
    );
    step(
        &mut vm,
        &mut screens,
        "md array",
        &format!("{}\n", menu_number(&arrays, "DiskStation:2")),
        "Enter: back: ",
    );
    step(
        &mut vm,
        &mut screens,
        "md verify",
        "v\n",
        "(Enter: back to the overview): ",
    );
    step(&mut vm, &mut screens, "overview", "\n", "Choose: ");
    step(
        &mut vm,
        &mut screens,
        "log",
        "l\n",
        "back to the overview: ",
    );
    step(&mut vm, &mut screens, "overview", "\n", "Choose: ");
    vm.power_off_from_menu();

    let kernel_line = |l: &str| {
        let t = l.trim_start();
        t.starts_with('[')
            && t[1..]
                .trim_start()
                .starts_with(|c: char| c.is_ascii_digit())
    };
    let wrong_plural = [
        "findings",
        "problems",
        "files",
        "items",
        "partitions",
        "disks",
        "members",
        "sectors",
        "areas",
        "mismatches",
        "errors",
        "bytes",
        "devices",
        "extents",
        "entries",
        "arrays",
    ];
    let mut bad = Vec::new();
    for (what, s) in &screens {
        // A carriage return starts the line over (progress lines).
        for l in s.replace("\r\n", "\n").split(['\n', '\r']) {
            if kernel_line(l) {
                continue;
            }
            if l.chars().count() > 79 {
                bad.push(format!("{what}: {} columns: {l}", l.chars().count()));
            }
            let words: Vec<&str> = l
                .split(|c: char| !c.is_ascii_alphanumeric() && c != '(' && c != ')')
                .collect();
            for w in words.windows(2) {
                if w[0] == "1" && wrong_plural.contains(&w[1]) {
                    bad.push(format!("{what}: plural after 1: {l}"));
                }
            }
            if l.contains("(s)") {
                bad.push(format!("{what}: '(s)' instead of the right form: {l}"));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "{} problems:\n{}",
        bad.len(),
        bad.join("\n")
    );
    let after: Vec<String> = disks.iter().map(|d| sha256_file(&d.path)).collect();
    assert_eq!(after, hashes, "a screen wrote to a disk");
}
