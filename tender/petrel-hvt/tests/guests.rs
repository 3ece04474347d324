//! Every example unikernel under the real tender on `/dev/kvm`: output and exit status
//! as solo5-hvt gives them.

mod common;
use common::*;

#[test]
fn hello_prints_its_arguments_and_exits_0() {
    let o = run_guest("hello", &["--mem=2"], &["a", "b"]);
    assert_exit(&o, 0, "");
    let out = stdout(&o);
    assert!(out.contains("Hello, world"), "{out}");
    assert!(out.contains("args: a b"), "{out}");
}

#[test]
fn exit_status_is_masked_like_solo5() {
    for (arg, want) in [("0", 0), ("42", 42), ("-1", 255), ("256", 0), ("255", 255)] {
        let o = run_guest("exit", &["--mem=2"], &[arg]);
        assert_eq!(code(&o), want, "exit {arg}: {}", stderr(&o));
    }
}

#[test]
fn abort_exits_255_with_message() {
    let o = run_guest("abort", &["--mem=2"], &[]);
    assert_eq!(code(&o), 255, "{}", stderr(&o));
    assert!(
        stdout(&o).contains("Solo5: solo5_abort() called"),
        "{}",
        stdout(&o)
    );
    let o = run_guest("abort", &["--mem=2"], &["panic"]);
    assert_eq!(code(&o), 255, "{}", stderr(&o));
    assert!(
        stdout(&o).contains("Solo5: ABORT: ") && stdout(&o).contains("asked to panic"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn page_fault_is_reported_by_the_guest_and_exits_255() {
    let o = run_guest("trap", &["--mem=2"], &[]);
    assert_eq!(code(&o), 255, "{}", stderr(&o));
    assert!(
        stdout(&o).contains("Solo5: trap: type=#PF"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn block_device_512_and_4096_byte_sectors() {
    let s = Scratch::new("petrel-hvt-blk");
    for (bs, size) in [(512usize, 64 * 1024usize), (4096, 128 * 1024)] {
        let f = s.file(&format!("disk{bs}"), size);
        let o = run_guest(
            "blk",
            &[
                "--mem=2",
                &format!("--block:storage={f}"),
                &format!("--block-sector-size:storage={bs}"),
            ],
            &[],
        );
        assert_exit(&o, 0, "");
        let want = format!("blk: OK {} sectors of {bs} bytes", size / bs);
        assert!(
            stdout(&o).contains(&want),
            "want {want:?} in\n{}",
            stdout(&o)
        );
        // The guest wrote a sector-dependent pattern over the whole device: check it
        // from the host too, so a tender that drops writes cannot pass.
        let data = std::fs::read(&f).unwrap();
        assert!(
            data.iter().any(|b| *b != 0),
            "the guest's writes reached the file"
        );
    }
}

#[test]
fn time_moves_and_poll_waits() {
    let o = run_guest("time", &["--mem=2"], &[]);
    assert_exit(&o, 0, "");
    assert!(stdout(&o).contains("time: OK"), "{}", stdout(&o));
}

#[test]
fn sixty_three_devices() {
    let s = Scratch::new("petrel-hvt-mft63");
    let files: Vec<String> = (0..63).map(|i| s.file(&format!("b{i}"), 512)).collect();
    let opts: Vec<String> = (0..63)
        .map(|i| format!("--block:b{i}={}", files[i]))
        .collect();
    let mut o: Vec<&str> = vec!["--mem=2"];
    o.extend(opts.iter().map(String::as_str));
    let out = run_guest("mft63", &o, &[]);
    assert_exit(&out, 0, "");
    assert!(stdout(&out).contains("63"), "{}", stdout(&out));
}

#[test]
fn misbehaving_guests_end_with_exit_1_and_a_clear_message() {
    for (guest, msg) in [
        ("bad_pointer", "Invalid guest access: gpa=0x"),
        ("bad_pointer_edge", "Invalid guest access: gpa=0x"),
        ("bad_port", "Invalid guest port access: port=0x"),
        ("bad_hypercall", "Invalid guest hypercall: num=0"),
        ("hlt", "KVM: unhandled exit: exit_reason=0x5"),
        ("triple_fault", "KVM: unhandled exit: exit_reason=0x8"),
    ] {
        let o = run_guest(guest, &["--mem=2"], &[]);
        assert_exit(&o, 1, msg);
        // One line, no panic, no backtrace.
        let err = stderr(&o);
        assert!(
            !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
            "{guest}: {err}"
        );
    }
}

#[test]
fn aborting_guest_leaves_a_core_file() {
    let s = Scratch::new("petrel-hvt-core");
    let dir = s.dir().to_str().unwrap().to_string();
    let o = run_guest("trap", &["--mem=2", &format!("--dumpcore={dir}")], &[]);
    assert_exit(&o, 255, "dumpcore: dumping guest core to: ");
    let err = stderr(&o);
    let line = err
        .lines()
        .find(|l| l.contains("dumping guest core to: "))
        .unwrap();
    let path = line.rsplit("to: ").next().unwrap();
    assert!(
        path.starts_with(&dir) && path.contains("/core.solo5-hvt."),
        "{line}"
    );
    let core = std::fs::read(path).expect("core file exists");
    assert_eq!(&core[..4], b"\x7fELF");
    assert_eq!(u16::from_le_bytes([core[16], core[17]]), 4, "ET_CORE");
    // The core covers all guest memory (2 MiB) after its headers, sparsely.
    assert!(core.len() >= 2 << 20, "core is {} bytes", core.len());
}

#[test]
fn dumpcore_directory_is_checked_before_the_guest_runs() {
    let o = run_guest("hello", &["--mem=2", "--dumpcore=/nonexistent/dir"], &[]);
    assert_exit(&o, 1, "dumpcore: cannot open dir");
    assert!(!stdout(&o).contains("Hello"), "the guest must not have run");
}
