//! The menu's "to a lab host" destination: asks for the receiver's
//! HOST:PORT, the name there, and the pairing code (typed unseen, kept in
//! memory only: never on a command line, never logged).

use crate::destmenu::ask;
use labstream::{PairingCode, Target};
use std::io::{BufRead, Write};

/// Where and how to stream.
pub struct Lab {
    pub target: Target,
    pub code: PairingCode,
}

pub enum Asked {
    /// The input ended.
    Ended,
    /// The user went back (an empty answer), or gave up after a bad one.
    Back,
    Lab(Lab),
}

/// Asks for HOST:PORT, the name (Enter: `default_name`) and the code.
pub fn ask_lab(default_name: &str, input: &mut impl BufRead, out: &mut impl Write) -> Asked {
    let _ = writeln!(
        out,
        "\nTo a lab host: run 'rescue receive --listen PORT DIR' there; it prints its pairing code."
    );
    let Some(addr) = ask(input, out, "Lab host as HOST:PORT (Enter: back): ") else {
        return Asked::Ended;
    };
    if addr.is_empty() {
        return Asked::Back;
    }
    let Some(name) = ask(
        input,
        out,
        &format!("Name on the lab host (Enter: {default_name}): "),
    ) else {
        return Asked::Ended;
    };
    let name = if name.is_empty() {
        default_name.to_string()
    } else {
        name
    };
    let target = match Target::parse(&format!("rescue://{addr}/{name}")) {
        Ok(t) => t,
        Err(e) => {
            let _ = writeln!(out, "{e}");
            return Asked::Back;
        }
    };
    let typed = {
        // Echo off on the console while the code is typed.
        let _quiet = screen::EchoOff::stdin();
        ask(input, out, "Pairing code (not shown as you type): ")
    };
    let Some(typed) = typed else {
        return Asked::Ended;
    };
    match PairingCode::parse(&typed) {
        Ok(code) => Asked::Lab(Lab { target, code }),
        Err(e) => {
            let _ = writeln!(out, "{e}");
            Asked::Back
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scripted(default: &str, script: &str) -> (Asked, String) {
        let mut input = std::io::Cursor::new(script.as_bytes().to_vec());
        let mut out = Vec::new();
        let a = ask_lab(default, &mut input, &mut out);
        (a, String::from_utf8(out).unwrap())
    }

    #[test]
    fn asks_address_name_and_code_and_never_shows_the_code() {
        let code = "ABCD-EFGH-JKMN-PQRS";
        let (a, out) = scripted("sda-X.img", &format!("lab:7000\n\n{code}\n"));
        let Asked::Lab(l) = a else { panic!("{out}") };
        assert_eq!(l.target.url(), "rescue://lab:7000/sda-X.img");
        assert_eq!(l.code, PairingCode::parse(code).unwrap());
        assert!(
            out.contains("Pairing code (not shown as you type)"),
            "{out}"
        );
        assert!(!out.contains("ABCD"), "the code is not echoed by us: {out}");
        let (a, _) = scripted("x", &format!("10.0.0.1:7000\nother.img\n{code}\n"));
        assert!(matches!(a, Asked::Lab(l) if l.target.name == "other.img"));
    }

    #[test]
    fn bad_answers_go_back_and_the_end_of_input_ends() {
        assert!(matches!(scripted("x", "\n").0, Asked::Back));
        assert!(matches!(scripted("x", "").0, Asked::Ended));
        let (a, out) = scripted("x", "lab\n\n");
        assert!(matches!(a, Asked::Back));
        assert!(out.contains("HOST:PORT"), "{out}");
        let (a, out) = scripted("x", "lab:7000\n../etc\n");
        assert!(matches!(a, Asked::Back), "{out}");
        let (a, out) = scripted("x", "lab:7000\n\nnot a code\n");
        assert!(matches!(a, Asked::Back), "{out}");
        assert!(matches!(scripted("x", "lab:7000\n\n").0, Asked::Ended));
    }
}
