//! `petrelctl`: see the library's documentation (`petrelctl --help`).

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    std::process::ExitCode::from(petrelctl::run::main(&args))
}
