//! Prints the menu's screens as the demo disk set shows them on the serial
//! console (to refresh the README's capture): the overview, one disk's
//! detail, the datastore list and the imaging flow's destination choice.
//! `cargo run --release -p qemu-tests --example demo_screen`.

use qemu_tests::*;
use std::time::Duration;

fn main() {
    let image = Image::built();
    let dir = temp_dir("screen");
    let disks = demo::demo_disks(dir.path(), true).expect("demo disks");
    let mut vm = Vm::start(&image, &VmConfig::new(disks));
    let t = Duration::from_secs(60);
    let overview = vm.wait_for("Choose: ", BOOT_TIMEOUT);
    let from = overview.rfind("=== rescue").unwrap_or(0);
    print!("{}", overview[from..].replace('\r', ""));
    let step = |vm: &mut Vm, send: &str, until: &str| {
        vm.send(send);
        print!("{}", vm.wait_for(until, t).replace('\r', ""));
    };
    step(&mut vm, "2\n", "Enter: back");
    step(&mut vm, "\n", "Choose: ");
    step(&mut vm, "d\n", "Datastore (Enter: back): ");
    step(&mut vm, "\n", "Choose: ");
    vm.send("i\n");
    let sources = vm.wait_for("Source (Enter: back): ", t);
    print!("{}", sources.replace('\r', ""));
    let dying = menu_number(&sources, "nvme0n1");
    step(
        &mut vm,
        &format!("{dying}\n"),
        "Destination (Enter: back): ",
    );
    step(&mut vm, "\n", "Choose: ");
    vm.power_off_from_menu();
    println!();
}
