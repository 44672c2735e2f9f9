//! `cargo run --release -p oauth-broker-tests --bin storm-demo`
//!
//! N programs share one login against a fake authorization server that is as
//! strict as the real ones. First each refreshes with its own copy of the
//! tokens (today's situation), then all of them go through one brokerd. Prints
//! the two side by side. Builds `brokerd` itself when run through cargo.
//!
//! Options: `--processes N` (default 10), `--lifetimes L` (default 3),
//! `--lifetime-secs S` (default 2), `--brokerd PATH`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use oauth_broker_tests::binaries::Binaries;
use oauth_broker_tests::storm_demo::{brokered, status_quo, table, DemoConfig};

const USAGE: &str =
    "usage: storm-demo [--processes N] [--lifetimes L] [--lifetime-secs S] [--brokerd PATH]";

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("storm-demo: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<ExitCode> {
    let mut config = DemoConfig::default();
    let mut brokerd = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number = |name: &str| -> anyhow::Result<u64> {
            let value = args.next().unwrap_or_default();
            value.parse::<u64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                anyhow::anyhow!("{name} needs a positive whole number, got {value:?}\n{USAGE}")
            })
        };
        match arg.as_str() {
            "--processes" => config.processes = number("--processes")? as usize,
            "--lifetimes" => config.lifetimes = number("--lifetimes")?.min(1000) as u32,
            "--lifetime-secs" => {
                config.token_lifetime = Duration::from_secs(number("--lifetime-secs")?)
            }
            "--brokerd" => brokerd = args.next().map(PathBuf::from),
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(ExitCode::SUCCESS);
            }
            other => {
                eprintln!("storm-demo: unknown argument {other:?}\n{USAGE}");
                return Ok(ExitCode::from(64));
            }
        }
    }
    // brokerctl is not needed, but locate() checks both: point it at brokerd's
    // sibling like every build has.
    let binaries = Binaries::locate(brokerd, None)?;
    let each = config.duration().as_secs_f64();
    eprintln!(
        "status quo: {} programs refreshing on their own for {each:.0} s …",
        config.processes
    );
    let before = status_quo::run(&config)?;
    eprintln!(
        "with the broker: {} programs asking one brokerd for {each:.0} s …",
        config.processes
    );
    let after = brokered::run(&config, &binaries.brokerd)?;
    println!();
    print!("{}", table::render(&config, &before, &after));
    Ok(ExitCode::SUCCESS)
}
