//! The server against QEMU's NBD client (qemu-img and qemu-io, from
//! qemu-utils) over a Unix socket, and against a minimal client written
//! here for what QEMU never sends (writes to a read-only export, reads
//! past the end).

use blockdev::BlockDevice;
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::Command;
use std::sync::Arc;
use testkit::TempDir;

fn data(len: usize) -> Vec<u8> {
    let mut state = 0x1234_5678_9abc_def0u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// Serves `dev` on a fresh socket in `t` for `clients` connections; the
/// socket path and the thread that gives each session's end and counts.
fn serve(
    t: &TempDir,
    dev: Arc<dyn BlockDevice>,
    clients: usize,
) -> (
    String,
    std::thread::JoinHandle<Vec<(nbd::End, nbd::Counts)>>,
) {
    let path = t.join("nbd.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let server = std::thread::spawn(move || {
        (0..clients)
            .map(|_| {
                let (conn, _) = listener.accept().unwrap();
                let opts = nbd::parallel::Options::default();
                nbd::serve(Arc::clone(&dev), "disk", conn, &opts).unwrap()
            })
            .collect()
    });
    (
        format!("nbd+unix:///disk?socket={}", path.display()),
        server,
    )
}

fn qemu(tool: &str, args: &[&str]) -> std::process::Output {
    Command::new(tool)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{tool} (qemu-utils) is needed: {e}"))
}

#[test]
fn qemu_img_copies_the_export_exactly() {
    let t = TempDir::new("nbd-qemu-img");
    let bytes = data(8 << 20);
    let dev = Arc::new(blockdev::MemDevice::new(bytes.clone(), 512));
    let (url, server) = serve(&t, dev, 1);
    let out = t.join("copy.raw");
    let o = qemu(
        "qemu-img",
        &["convert", "-f", "raw", &url, &out.display().to_string()],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(std::fs::read(&out).unwrap() == bytes, "the copy differs");
    let sessions = server.join().unwrap();
    assert_eq!(sessions[0].0, nbd::End::Disconnected);
    assert_eq!(sessions[0].1.bytes, 8 << 20);
    assert_eq!(sessions[0].1.read_errors, 0);
}

#[test]
fn a_bad_area_reads_as_an_io_error_and_the_rest_still_reads() {
    let t = TempDir::new("nbd-eio");
    // A bad sector at 1 MiB, as a ddrescue mapfile would record it.
    let dev = Arc::new(blockdev::BadAreaDevice::new(
        Arc::new(blockdev::MemDevice::new(data(4 << 20), 512)),
        blockdev::Ranges(vec![(1 << 20, 4096)]),
    ));
    let (url, server) = serve(&t, dev, 1);
    let o = qemu(
        "qemu-io",
        &[
            "-r",
            "-f",
            "raw",
            "-c",
            "read 1M 4k",
            "-c",
            "read 2M 4k",
            &url,
        ],
    );
    let text =
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    assert!(text.contains("Input/output error"), "{text}");
    assert!(
        text.contains("read 4096/4096 bytes at offset 2097152"),
        "{text}"
    );
    let sessions = server.join().unwrap();
    assert_eq!(sessions[0].1.read_errors, 1, "{text}");
}

/// A raw client: the handshake by NBD_OPT_EXPORT_NAME, then requests.
fn request(conn: &mut UnixStream, kind: u16, offset: u64, len: u32, data: &[u8]) -> (u32, Vec<u8>) {
    let mut r = Vec::new();
    r.extend(0x2560_9513u32.to_be_bytes());
    r.extend(0u16.to_be_bytes());
    r.extend(kind.to_be_bytes());
    r.extend(7u64.to_be_bytes());
    r.extend(offset.to_be_bytes());
    r.extend(len.to_be_bytes());
    r.extend(data);
    conn.write_all(&r).unwrap();
    let mut head = [0u8; 16];
    conn.read_exact(&mut head).unwrap();
    assert_eq!(
        u32::from_be_bytes(head[..4].try_into().unwrap()),
        0x6744_6698
    );
    assert_eq!(
        u64::from_be_bytes(head[8..].try_into().unwrap()),
        7,
        "cookie echoed"
    );
    let error = u32::from_be_bytes(head[4..8].try_into().unwrap());
    let mut body = vec![
        0u8;
        if error == 0 && kind == 0 {
            len as usize
        } else {
            0
        }
    ];
    conn.read_exact(&mut body).unwrap();
    (error, body)
}

#[test]
fn writes_are_refused_and_reads_past_the_end_are_invalid() {
    let t = TempDir::new("nbd-raw");
    let bytes = data(1 << 20);
    let (_, server) = serve(
        &t,
        Arc::new(blockdev::MemDevice::new(bytes.clone(), 512)),
        1,
    );
    let mut conn = UnixStream::connect(t.join("nbd.sock")).unwrap();
    let mut hello = [0u8; 18];
    conn.read_exact(&mut hello).unwrap();
    assert_eq!(&hello[..8], b"NBDMAGIC");
    assert_eq!(&hello[8..16], b"IHAVEOPT");
    conn.write_all(&2u32.to_be_bytes()).unwrap(); // no zeroes
    let mut opt = Vec::new();
    opt.extend(b"IHAVEOPT");
    opt.extend(1u32.to_be_bytes()); // NBD_OPT_EXPORT_NAME
    opt.extend(4u32.to_be_bytes());
    opt.extend(b"disk");
    conn.write_all(&opt).unwrap();
    let mut export = [0u8; 10];
    conn.read_exact(&mut export).unwrap();
    assert_eq!(u64::from_be_bytes(export[..8].try_into().unwrap()), 1 << 20);
    let flags = u16::from_be_bytes(export[8..].try_into().unwrap());
    assert_eq!(flags & 0b11, 0b11, "has flags, read-only");

    let (e, body) = request(&mut conn, 0, 4096, 512, &[]);
    assert_eq!((e, body.as_slice()), (0, &bytes[4096..4608]));
    assert_eq!(request(&mut conn, 1, 0, 512, &[0xAA; 512]).0, 1, "EPERM");
    assert_eq!(
        request(&mut conn, 0, (1 << 20) - 256, 512, &[]).0,
        22,
        "EINVAL"
    );
    assert_eq!(request(&mut conn, 3, 0, 0, &[]).0, 0, "flush is a no-op");
    conn.write_all(&{
        let mut r = Vec::new();
        r.extend(0x2560_9513u32.to_be_bytes());
        r.extend(0u16.to_be_bytes());
        r.extend(2u16.to_be_bytes()); // NBD_CMD_DISC
        r.extend([0u8; 20]);
        r
    })
    .unwrap();
    let sessions = server.join().unwrap();
    assert_eq!(sessions[0].0, nbd::End::Disconnected);
    assert_eq!((sessions[0].1.reads, sessions[0].1.refused), (1, 1));
}
