//! Builds the Petrel firmware reproducibly: initramfs, UKI, GPT disk image; provisions devices
use std::process::ExitCode;

use argh::FromArgs;
use petrel_image::cli::{BuildCmd, PinCmd};
use petrel_image::disk::cli::{DiskCmd, ProvisionCmd};

#[derive(FromArgs, Debug)]
/// Build the Petrel firmware image and provision devices.
struct Args {
    #[argh(subcommand)]
    command: Command,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
enum Command {
    Build(BuildCmd),
    Pin(PinCmd),
    Disk(DiskCmd),
    Provision(ProvisionCmd),
}

fn main() -> ExitCode {
    let args: Args = argh::from_env();
    let result = match args.command {
        Command::Build(cmd) => cmd.run(),
        Command::Pin(cmd) => cmd.run(),
        Command::Disk(cmd) => cmd.run(),
        Command::Provision(cmd) => cmd.run(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("petrel-image: {e}");
            ExitCode::FAILURE
        }
    }
}
