//! `petrel-hvt`: run one Solo5 hvt unikernel. See `petrel-hvt --help`.
fn main() {
    let code = petrel_hvt::tender::main_with_args(std::env::args_os().skip(1).collect());
    std::process::exit(code);
}
