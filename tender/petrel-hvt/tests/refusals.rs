//! Bad input of every kind: one clear line on stderr (upstream's wording), exit 1,
//! never a panic.

mod common;
use common::*;

fn assert_clean_refusal(o: &std::process::Output, needle: &str) {
    assert_exit(o, 1, needle);
    let err = stderr(o);
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn version_goes_to_stderr_and_exits_0() {
    let o = run(&["--version"]);
    assert_exit(&o, 0, "ABI version 2");
}

#[test]
fn help_prints_usage_and_exits_1_like_upstream() {
    let o = run(&["--help"]);
    assert_exit(&o, 1, "--net:NAME=");
}

#[test]
fn missing_kernel_file() {
    let o = run(&["/nonexistent/kernel.hvt"]);
    assert_clean_refusal(
        &o,
        "/nonexistent/kernel.hvt: Could not open: No such file or directory",
    );
}

#[test]
fn not_an_elf() {
    let s = Scratch::new("petrel-hvt-notelf");
    let f = s.path("junk.hvt");
    std::fs::write(&f, b"this is not an ELF file at all, just text").unwrap();
    let o = run(&[f.to_str().unwrap()]);
    assert_clean_refusal(&o, "invalid executable");
    std::fs::write(&f, [b'x'; 4096]).unwrap();
    let o = run(&[f.to_str().unwrap()]);
    assert_clean_refusal(&o, "invalid or unsupported executable");
}

#[test]
fn a_host_program_is_not_a_unikernel() {
    let o = run(&["/bin/true"]);
    assert_exit(&o, 1, "");
}

#[test]
fn undeclared_device() {
    let o = run_guest("hello", &["--net:service0=tap0"], &[]);
    assert_clean_refusal(&o, "Resource not declared in manifest: 'service0'");
    assert!(
        stderr(&o).contains("Invalid option: `--net:service0=tap0'"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn declared_device_not_attached() {
    let o = run_guest("blk", &["--mem=2"], &[]);
    assert_clean_refusal(
        &o,
        "Device 'storage' of type BLOCK_BASIC declared but not attached.",
    );
    assert!(stderr(&o).contains("All declared devices must be attached. See --help for syntax."));
}

#[test]
fn unknown_option() {
    let o = run_guest("hello", &["--frobnicate"], &[]);
    assert_clean_refusal(&o, "Invalid option: `--frobnicate'");
}

#[test]
fn bad_memory_sizes() {
    assert_clean_refusal(
        &run_guest("hello", &["--mem=0"], &[]),
        "Malformed argument to --mem",
    );
    assert_clean_refusal(
        &run_guest("hello", &["--mem=abc"], &[]),
        "Malformed argument to --mem",
    );
    assert_clean_refusal(
        &run_guest("hello", &["--mem=8192"], &[]),
        "exceeds the max size",
    );
    let o = run_guest("hello", &["--mem=3"], &[]);
    assert_exit(&o, 0, "adjusting memory to 2097152 bytes");
}

#[test]
fn command_line_too_long() {
    let long = "x".repeat(8192);
    let o = run_guest("hello", &["--mem=2"], &[&long]);
    assert_clean_refusal(&o, "Guest command line too long (max=8191 characters)");
    let fits = "x".repeat(8191);
    assert_eq!(code(&run_guest("hello", &["--mem=2"], &[&fits])), 0);
}

#[test]
fn block_file_problems() {
    let s = Scratch::new("petrel-hvt-blkbad");
    let odd = s.file("odd", 1000);
    assert_clean_refusal(
        &run_guest("blk", &["--mem=2", &format!("--block:storage={odd}")], &[]),
        "storage: Backing storage size must be block aligned (512 bytes)",
    );
    let empty = s.file("empty", 0);
    assert_clean_refusal(
        &run_guest(
            "blk",
            &["--mem=2", &format!("--block:storage={empty}")],
            &[],
        ),
        "storage: Backing storage must be at least 1 block (512 bytes) in size",
    );
    let o = run_guest(
        "blk",
        &["--mem=2", "--block:storage=/nonexistent/disk"],
        &[],
    );
    // One line, as upstream: no usage, no Rust error decoration.
    assert_clean_refusal(
        &o,
        "petrel-hvt: Could not open block device: /nonexistent/disk: No such file or directory\n",
    );
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
    let ok = s.file("ok", 4096);
    assert_clean_refusal(
        &run_guest(
            "blk",
            &[
                "--mem=2",
                &format!("--block:storage={ok}"),
                "--block-sector-size:storage=1000",
            ],
            &[],
        ),
        "Block size must be a multiple of 2 greater than or equal 512",
    );
}

#[test]
fn running_a_unikernel_directly_fails_cleanly() {
    // The fake interpreter makes the host refuse to execute guest code: execve fails
    // with ENOENT (a shell reports exit 127), and no guest instruction runs.
    let e = std::process::Command::new(guest("hello"))
        .status()
        .expect_err("a unikernel must not execute on the host");
    assert_eq!(e.kind(), std::io::ErrorKind::NotFound, "{e}");
}

#[test]
fn missing_tap_is_named_once_with_strerror() {
    let o = run_guest("net", &["--net:service0=petrelnotap9"], &[]);
    assert_clean_refusal(
        &o,
        "petrel-hvt: Could not attach interface: petrelnotap9: No such file or directory\n",
    );
    assert!(!stderr(&o).contains("os error"), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("Invalid option: `--net:service0=petrelnotap9'"),
        "{}",
        stderr(&o)
    );
}
