//! `cargo run --release -p oauth-broker-tests --bin bench`
//!
//! Measures brokerd against this machine's physical limit and prints the
//! Markdown table of the README's "Performance" section. It builds `brokerd`
//! and `brokerctl` itself (in release mode) before measuring.
//!
//! Options: `--smoke` (tiny counts: checks that everything runs, figures are
//! meaningless), `--brokerd PATH`, `--brokerctl PATH` (measure other builds).

use std::path::PathBuf;
use std::process::ExitCode;

use oauth_broker_tests::bench::{self, report, BenchConfig};
use oauth_broker_tests::binaries::Binaries;

const USAGE: &str = "usage: bench [--smoke] [--brokerd PATH] [--brokerctl PATH]";

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<ExitCode> {
    let mut smoke = false;
    let mut brokerd = None;
    let mut brokerctl = None;
    let mut args = std::env::args_os().skip(1);
    while let Some(arg) = args.next() {
        match arg.to_str() {
            Some("--smoke") => smoke = true,
            Some("--brokerd") => brokerd = args.next().map(PathBuf::from),
            Some("--brokerctl") => brokerctl = args.next().map(PathBuf::from),
            Some("-h" | "--help") => {
                println!("{USAGE}");
                return Ok(ExitCode::SUCCESS);
            }
            _ => {
                eprintln!("bench: unknown argument {arg:?}\n{USAGE}");
                return Ok(ExitCode::from(64));
            }
        }
    }
    if cfg!(debug_assertions) && !smoke {
        anyhow::bail!(
            "this is a debug build, whose figures mean nothing; run `cargo run --release -p oauth-broker-tests --bin bench`"
        );
    }
    let binaries = Binaries::locate(brokerd, brokerctl)?;
    let config = if smoke {
        BenchConfig::smoke()
    } else {
        BenchConfig::full()
    };
    let result = bench::run(&binaries, &config, |stage| eprintln!("… {stage}"))?;
    println!(
        "\nMachine: {}\nbrokerd: {}\n",
        report::machine(),
        binaries.brokerd.display()
    );
    print!("{}", result.markdown());
    let missed: Vec<_> = result
        .verdicts()
        .into_iter()
        .filter(|v| !v.met)
        .map(|v| v.target)
        .collect();
    if missed.is_empty() {
        println!("\nAll targets met.");
    } else {
        println!("\nTargets missed: {}.", missed.join("; "));
    }
    Ok(ExitCode::SUCCESS)
}
