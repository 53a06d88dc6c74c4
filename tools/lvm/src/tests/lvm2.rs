//! PVs written by lvm2 (pvcreate, vgcreate, lvcreate, vgcfgrestore on loop
//! devices): what the parser reads must be what lvm2's own `pvs`, `vgs` and
//! `lvs` say, and the tables are checked against ones computed by hand
//! from the layout: pe_start 1 MiB = 2048 sectors, extents of 4 MiB = 8192
//! sectors, PV 0 as 7:0 and PV 1 as 7:1.

use crate::label::{read_pv, MdaRead};
use crate::plan::table_text;
use crate::scan::{build, ScanReport, Seen};
use crate::system::read_device;
use blockdev::{BlockDevice, MemDevice};
use testkit::lvm2::LvmImages;

/// A VG name with dashes, so the dm names show lvm2's escaping.
pub(super) fn vg_name(tag: &str) -> String {
    format!("rt-{tag}-{}", std::process::id())
}

/// The PV images read as devices 7:i.
fn seen_of(t: &LvmImages, which: &[usize]) -> Vec<Seen> {
    which
        .iter()
        .map(|&i| {
            let path = t.images[i].display().to_string();
            let dev = blockdev::Device::open(&path).unwrap();
            read_device(&path, &dev, Some(format!("7:{i}")))
                .unwrap()
                .expect("a PV")
        })
        .collect()
}

fn scan(t: &LvmImages, which: &[usize], partial: bool) -> ScanReport {
    build(&seen_of(t, which), Vec::new(), partial)
}

/// `lvm CMD --noheadings --separator ; --units s --nosuffix -o FIELDS`, rows.
fn report(t: &LvmImages, cmd: &str, fields: &str, extra: &[&str]) -> Vec<Vec<String>> {
    let mut args = vec![
        cmd,
        "--noheadings",
        "--separator",
        ";",
        "--units",
        "s",
        "--nosuffix",
        "-o",
        fields,
    ];
    args.extend_from_slice(extra);
    t.lvm(&args)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.trim().split(';').map(|f| f.trim().to_string()).collect())
        .collect()
}

fn table_of(r: &ScanReport, lv: &str) -> String {
    let l = r.vgs[0].lvs.iter().find(|l| l.name == lv).unwrap();
    table_text(
        l.table
            .as_ref()
            .unwrap_or_else(|| panic!("{lv}: {:?}", l.why_not)),
    )
}

/// Two 32 MiB PVs in a VG with 4 MiB extents.
pub(super) fn two_pv_vg(tag: &str) -> (LvmImages, String) {
    let t = LvmImages::new(tag, &[32, 32]);
    let vg = vg_name(tag);
    t.lvm(&["pvcreate", "-y", &t.loops[0], &t.loops[1]]);
    t.lvm(&["vgcreate", "-s", "4m", &vg, &t.loops[0], &t.loops[1]]);
    (t, vg)
}

#[test]
fn linear_striped_and_two_segment_lvs_match_lvm2() {
    let (t, vg) = two_pv_vg("lvm-lin");
    t.lvm(&[
        "lvcreate",
        "-an",
        "-Zn",
        "-L",
        "8m",
        "-n",
        "lin",
        &vg,
        &t.loops[0],
    ]);
    t.lvm(&[
        "lvcreate", "-an", "-Zn", "-i", "2", "-I", "64k", "-L", "16m", "-n", "str", &vg,
    ]);
    t.lvm(&["lvextend", "-L", "+4m", &format!("{vg}/lin"), &t.loops[1]]);

    let r = scan(&t, &[0, 1], false);
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    assert_eq!(r.vgs.len(), 1);
    let v = &r.vgs[0];
    assert!(v.disagreements.is_empty(), "{:?}", v.disagreements);
    assert_eq!(v.metadata_copies, 2, "both PVs carry the same metadata");
    assert!(!r.has_findings());

    // The VG and PVs as lvm2 reports them.
    let vgs = report(&t, "vgs", "vg_name,vg_uuid,vg_seqno,vg_extent_size", &[&vg]);
    assert_eq!(vgs[0][0], v.name);
    assert_eq!(vgs[0][1], v.id);
    assert_eq!(vgs[0][2], v.seqno.to_string());
    assert_eq!(vgs[0][3], "8192");
    assert_eq!(v.extent_size_bytes, 4 << 20);
    let pvs = report(&t, "pvs", "pv_name,pv_uuid,pe_start,pv_pe_count", &[]);
    for (i, row) in pvs.iter().enumerate() {
        let p = v.pvs.iter().find(|p| p.uuid == row[1]).expect("PV known");
        assert_eq!(row[0], t.loops[i]);
        assert_eq!(p.pe_start_bytes, row[2].parse::<u64>().unwrap() * 512);
        assert_eq!(row[2], "2048");
        assert_eq!(p.pe_count.to_string(), row[3]);
        assert_eq!(p.found_on.as_deref(), Some(t.images[i].to_str().unwrap()));
    }
    // Segments as lvm2 reports them.
    let segs = report(
        &t,
        "lvs",
        "lv_name,lv_uuid,seg_start_pe,seg_size_pe,stripes,stripe_size,seg_pe_ranges,seg_type",
        &["--segments", &vg],
    );
    for row in &segs {
        let lv = v.vg.lv(&row[0]).unwrap();
        let seg = lv
            .segments
            .iter()
            .find(|s| s.start_extent.to_string() == row[2])
            .unwrap();
        assert_eq!(seg.extent_count.to_string(), row[3], "{row:?}");
        assert_eq!(seg.stripe_count.to_string(), row[4], "{row:?}");
        assert_eq!(seg.stripe_size.unwrap_or(0).to_string(), row[5], "{row:?}");
        let plan = v.lvs.iter().find(|l| l.name == row[0]).unwrap();
        assert_eq!(
            plan.dm_uuid,
            format!("LVM-{}{}", v.id.replace('-', ""), row[1].replace('-', ""))
        );
        let _ = &row[6];
    }
    assert_eq!(
        segs.iter().map(|r| r[7].as_str()).collect::<Vec<_>>(),
        ["linear", "linear", "striped"]
    );

    // By hand: lin = PV0 extents 0-1, then PV1 extent 2 (after str's 0-1);
    // str = 2 extents on each PV, PV0 from extent 2, PV1 from 0, 64 KiB
    // (128-sector) chunks.
    assert_eq!(
        table_of(&r, "lin"),
        "0 16384 linear 7:0 2048\n16384 8192 linear 7:1 18432\n"
    );
    assert_eq!(
        table_of(&r, "str"),
        "0 32768 striped 2 128 7:0 18432 7:1 2048\n"
    );
    let lin = v.lvs.iter().find(|l| l.name == "lin").unwrap();
    assert_eq!(lin.size_bytes, 12 << 20);
    assert_eq!(lin.dm_name, format!("{}-lin", vg.replace('-', "--")));
    assert_eq!(lin.segment_types, ["striped"]);

    // The text front shows the same.
    let text = crate::cli::render(&r, true);
    assert!(
        text.contains("activatable as /dev/mapper/rt--lvm--lin--"),
        "{text}"
    );
    assert!(
        text.contains("      0 32768 striped 2 128 7:0 18432 7:1 2048"),
        "{text}"
    );
    let json = cliconv::json_text(1, &r).unwrap();
    let j: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(j["vgs"][0]["name"], vg.as_str());
    assert_eq!(j["vgs"][0]["lvs"][0]["table"][0]["target"], "linear");
}

#[test]
fn missing_pv_is_named_and_partial_maps_it_to_error() {
    let (t, vg) = two_pv_vg("lvm-miss");
    t.lvm(&[
        "lvcreate",
        "-an",
        "-Zn",
        "-L",
        "8m",
        "-n",
        "lin",
        &vg,
        &t.loops[0],
    ]);
    t.lvm(&[
        "lvcreate", "-an", "-Zn", "-i", "2", "-I", "64k", "-L", "16m", "-n", "str", &vg,
    ]);
    let r = scan(&t, &[0], false);
    let v = &r.vgs[0];
    let missing: Vec<_> = v.missing_pvs().collect();
    assert_eq!(missing.len(), 1);
    assert_eq!(missing[0].key, "pv1");
    assert_eq!(missing[0].device_hint.as_deref(), Some(t.loops[1].as_str()));
    assert_eq!(table_of(&r, "lin"), "0 16384 linear 7:0 2048\n");
    let s = v.lvs.iter().find(|l| l.name == "str").unwrap();
    assert!(s.table.is_none());
    assert_eq!(
        s.why_not.as_deref(),
        Some(format!("PV {} is missing", missing[0].uuid).as_str())
    );
    assert_eq!(s.missing_pvs, [missing[0].uuid.clone()]);
    assert!(r.has_findings());

    let r = scan(&t, &[0], true);
    assert_eq!(table_of(&r, "str"), "0 32768 error\n");
    let s = r.vgs[0].lvs.iter().find(|l| l.name == "str").unwrap();
    assert!(
        s.why_not.as_deref().unwrap().starts_with("partial: "),
        "{s:?}"
    );
}

#[test]
fn an_older_metadata_copy_is_reported_and_the_newest_used() {
    let (t, vg) = two_pv_vg("lvm-stale");
    // PV 1 as it was before the LV was made.
    let old = t.read(1);
    t.lvm(&[
        "lvcreate",
        "-an",
        "-Zn",
        "-L",
        "8m",
        "-n",
        "lin",
        &vg,
        &t.loops[0],
    ]);
    let seqno = report(&t, "vgs", "vg_seqno", &[&vg])[0][0].clone();
    let mut seen = seen_of(&t, &[0]);
    let dev = MemDevice::new(old, 512);
    seen.push(
        read_device("old-pv1", &dev, Some("7:1".into()))
            .unwrap()
            .unwrap(),
    );
    let r = build(&seen, Vec::new(), false);
    let v = &r.vgs[0];
    assert_eq!(v.seqno.to_string(), seqno);
    assert!(v.vg.lv("lin").is_some());
    assert_eq!(v.metadata_copies, 1);
    assert_eq!(v.disagreements.len(), 1, "{:?}", v.disagreements);
    assert!(
        v.disagreements[0].contains(&format!("older than {seqno}")),
        "{:?}",
        v.disagreements
    );
    assert!(r.has_findings());
}

#[test]
fn thin_pool_thin_lv_and_snapshot_are_named_not_supported() {
    let (t, vg) = two_pv_vg("lvm-thin");
    t.lvm(&[
        "lvcreate",
        "-an",
        "-Zn",
        "-L",
        "8m",
        "-n",
        "lin",
        &vg,
        &t.loops[0],
    ]);
    t.lvm(&[
        "lvcreate",
        "-an",
        "-Zn",
        "-L",
        "16m",
        "-n",
        "pdata",
        &vg,
        &t.loops[0],
    ]);
    t.lvm(&[
        "lvcreate",
        "-an",
        "-Zn",
        "-L",
        "4m",
        "-n",
        "pmeta",
        &vg,
        &t.loops[0],
    ]);
    t.lvm(&[
        "lvcreate",
        "-an",
        "-Zn",
        "-L",
        "4m",
        "-n",
        "snap",
        &vg,
        &t.loops[1],
    ]);
    // lvm2 will not create these without dm; it writes them from a
    // description in its own format: pdata and pmeta become the hidden
    // data and metadata LVs of a thin pool with one thin LV, and snap the
    // COW store of a snapshot of lin.
    let mut text = t.backup(&vg);
    text = hide(
        &text.replace("\t\tpdata {", "\t\tpool_tdata {"),
        "pool_tdata",
    );
    text = hide(
        &text.replace("\t\tpmeta {", "\t\tpool_tmeta {"),
        "pool_tmeta",
    );
    let added = r#"
		pool {
			id = "Pool00-0000-0000-0000-0000-0000-000000"
			status = ["READ", "WRITE", "VISIBLE"]
			flags = []
			segment_count = 1
			segment1 {
				start_extent = 0
				extent_count = 4
				type = "thin-pool"
				metadata = "pool_tmeta"
				pool = "pool_tdata"
				transaction_id = 1
				chunk_size = 128
				discards = "passdown"
				zero_new_blocks = 1
			}
		}
		thin1 {
			id = "Thin01-0000-0000-0000-0000-0000-000000"
			status = ["READ", "WRITE", "VISIBLE"]
			flags = []
			segment_count = 1
			segment1 {
				start_extent = 0
				extent_count = 8
				type = "thin"
				thin_pool = "pool"
				transaction_id = 0
				device_id = 1
			}
		}
		snapshot0 {
			id = "Snap00-0000-0000-0000-0000-0000-000000"
			status = ["READ"]
			flags = []
			segment_count = 1
			segment1 {
				start_extent = 0
				extent_count = 2
				type = "snapshot"
				chunk_size = 8
				origin = "lin"
				cow_store = "snap"
			}
		}
"#;
    let at = text.find("\tlogical_volumes {\n").unwrap() + "\tlogical_volumes {\n".len();
    text.insert_str(at, added);
    t.restore(&vg, &text);
    // lvm2 took it: lvs shows the pool, the thin LV and the snapshot.
    let lvs = report(&t, "lvs", "lv_name,segtype,origin,pool_lv", &["-a", &vg]);
    let find = |n: &str| {
        lvs.iter()
            .find(|r| r[0] == n)
            .unwrap_or_else(|| panic!("{n}: {lvs:?}"))
    };
    assert_eq!(find("pool")[1], "thin-pool");
    assert_eq!(find("thin1")[1], "thin");
    assert_eq!(find("thin1")[3], "pool");
    assert_eq!(find("snap")[2], "lin");

    let r = scan(&t, &[0, 1], false);
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    let v = &r.vgs[0];
    let why = |n: &str| {
        v.lvs
            .iter()
            .find(|l| l.name == n)
            .unwrap()
            .why_not
            .clone()
            .unwrap_or_default()
    };
    assert_eq!(why("pool"), "segment type thin-pool is not supported");
    assert_eq!(why("thin1"), "segment type thin is not supported");
    assert_eq!(why("snapshot0"), "segment type snapshot is not supported");
    assert!(
        why("snap").starts_with("snapshot of lin: "),
        "{}",
        why("snap")
    );
    assert_eq!(why("pool_tdata"), "hidden LV (a part of another LV)");
    assert_eq!(table_of(&r, "lin"), "0 16384 linear 7:0 2048\n");
    let pool = v.lvs.iter().find(|l| l.name == "pool").unwrap();
    assert_eq!(pool.segment_types, ["thin-pool"]);
    assert!(pool.table.is_none());
    let seg = &v.vg.lv("pool").unwrap().segments[0];
    assert_eq!(seg.uses, ["pool_tmeta", "pool_tdata"]);
    assert!(
        r.has_findings(),
        "visible LVs that cannot be activated are findings"
    );
    let text = crate::cli::render(&r, false);
    assert!(text.contains("LV pool_tdata (hidden)"), "{text}");
    assert!(
        text.contains("not activatable: segment type thin is not supported"),
        "{text}"
    );
}

/// Removes VISIBLE from LV `name`'s status in a metadata text.
fn hide(text: &str, name: &str) -> String {
    let start = text.find(&format!("\t\t{name} {{")).unwrap();
    let at = start + text[start..].find(", \"VISIBLE\"").unwrap();
    format!("{}{}", &text[..at], &text[at + ", \"VISIBLE\"".len()..])
}

#[test]
fn metadata_that_wrapped_around_the_ring_is_read() {
    let t = LvmImages::new("lvm-wrap", &[16]);
    let vg = vg_name("wrap");
    // A 32 KiB metadata area (the smallest), so the ring wraps soon.
    t.lvm(&[
        "pvcreate",
        "-y",
        "--metadatasize",
        "32k",
        "--dataalignment",
        "64k",
        &t.loops[0],
    ]);
    t.lvm(&["vgcreate", &vg, &t.loops[0]]);
    let tag = "x".repeat(200);
    let mut wrapped_at = None;
    for i in 0..80 {
        t.lvm(&["vgchange", "--addtag", &format!("t{i}_{tag}"), &vg]);
        let dev = blockdev::Device::open(&t.images[0]).unwrap();
        let pv = read_pv(&dev).unwrap().unwrap();
        let Ok(MdaRead::Text(m)) = &pv.metadata[0] else {
            panic!("{:?}", pv.metadata[0]);
        };
        if m.wrapped {
            wrapped_at = Some((i, m.clone()));
            break;
        }
    }
    let (_, m) = wrapped_at.expect("the metadata wrapped within 80 updates");
    assert!(m.offset + m.size > dev_mda_size(&t), "{m:?}");
    let r = scan(&t, &[0], false);
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    let seqno = report(&t, "vgs", "vg_seqno", &[&vg])[0][0].clone();
    assert_eq!(r.vgs[0].seqno.to_string(), seqno);
    assert_eq!(r.vgs[0].name, vg);
    assert!(m.text.contains(&format!("t0_{tag}")));
}

fn dev_mda_size(t: &LvmImages) -> u64 {
    let dev = blockdev::Device::open(&t.images[0]).unwrap();
    let h = crate::label::read_header(&dev).unwrap().unwrap();
    let mut b = vec![0u8; 512];
    dev.read_exact_at(&mut b, h.metadata_areas[0].offset)
        .unwrap();
    crate::label::parse_mda_header(&b, h.metadata_areas[0].offset)
        .unwrap()
        .size
}
