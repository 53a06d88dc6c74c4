//! Prints the menu's overview and one disk's detail as the demo disk set
//! shows them on the serial console (to refresh the README's capture):
//! `cargo run --release -p qemu-tests --example demo_screen`.

use qemu_tests::*;
use std::time::Duration;

fn main() {
    let image = Image::built();
    let dir = TempDir::new("screen");
    let disks = demo::demo_disks(dir.path(), true).expect("demo disks");
    let mut vm = Vm::start(&image, &VmConfig::new(disks));
    let overview = vm.wait_for("Choose: ", BOOT_TIMEOUT);
    let from = overview.rfind("=== rescue").unwrap_or(0);
    print!("{}", overview[from..].replace('\r', ""));
    vm.send("2\n");
    print!(
        "{}",
        vm.wait_for("Enter: back", Duration::from_secs(60))
            .replace('\r', "")
    );
    vm.send("\n");
    vm.wait_for("Choose: ", Duration::from_secs(60));
    vm.power_off_from_menu();
    println!();
}
