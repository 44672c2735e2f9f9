//! `cargo run --release -p oauth-broker-tests --bin bench`
//!
//! Measures brokerd against this machine's physical limit and prints the
//! Markdown table of the README's "Performance" section. It builds `brokerd`
//! and `brokerctl` itself (in release mode) before measuring.
//!
//! Options: `--smoke` (tiny counts: checks that everything runs, figures are
//! meaningless), `--brokerd PATH`, `--brokerctl PATH` (measure other builds),
//! `--only token` (only the whole-process rows: `brokerctl token`, `oidc-token`
//! and a C no-op, interleaved), `--runs N` (runs of each process, default 200),
//! `--only storm` (only the refresh storm with the state journal, `--runs N`
//! times, default 5: one line each — the storm moves with the machine's mood),
//! `--serve` (set up brokerd and oidc-agent, print how to run `brokerctl
//! token` and `oidc-token` against them, and wait until stdin closes: for
//! `strace`, `valgrind` and the like).

use std::path::PathBuf;
use std::process::ExitCode;

use oauth_broker_tests::bench::{self, report, BenchConfig};
use oauth_broker_tests::binaries::Binaries;

const USAGE: &str =
    "usage: bench [--smoke] [--brokerd PATH] [--brokerctl PATH] [--only token|storm] [--runs N] [--serve]";

/// `--only …`: one part of the bench.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Only {
    Token,
    Storm,
}

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
    let mut only = None;
    let mut runs = None;
    let mut serve = false;
    let mut args = std::env::args_os().skip(1);
    while let Some(arg) = args.next() {
        match arg.to_str() {
            Some("--smoke") => smoke = true,
            Some("--brokerd") => brokerd = args.next().map(PathBuf::from),
            Some("--brokerctl") => brokerctl = args.next().map(PathBuf::from),
            Some("--only") => match args.next().as_ref().and_then(|a| a.to_str()) {
                Some("token") => only = Some(Only::Token),
                Some("storm") => only = Some(Only::Storm),
                _ => {
                    eprintln!("bench: --only takes `token` or `storm`\n{USAGE}");
                    return Ok(ExitCode::from(64));
                }
            },
            Some("--serve") => serve = true,
            Some("--runs") => match args.next().and_then(|n| n.to_str()?.parse().ok()) {
                Some(n) if n > 0 => runs = Some(n),
                _ => {
                    eprintln!("bench: --runs needs a positive number\n{USAGE}");
                    return Ok(ExitCode::from(64));
                }
            },
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
    // Serving measures nothing: any build will do.
    if serve {
        let binaries = Binaries::locate(brokerd, brokerctl)?;
        bench::serve(&binaries, std::io::stdout().lock())?;
        return Ok(ExitCode::SUCCESS);
    }
    if cfg!(debug_assertions) && !smoke {
        anyhow::bail!(
            "this is a debug build, whose figures mean nothing; run `cargo run --release -p oauth-broker-tests --bin bench`"
        );
    }
    let binaries = Binaries::locate(brokerd, brokerctl)?;
    let mut config = if smoke {
        BenchConfig::smoke()
    } else {
        BenchConfig::full()
    };
    if only == Some(Only::Storm) {
        println!(
            "\nMachine: {}\nbrokerd: {}\n",
            report::machine(),
            binaries.brokerd.display()
        );
        for run in 1..=runs.unwrap_or(5) {
            let storm = bench::storm::run(
                &binaries.brokerd,
                config.storm_clients,
                bench::storm::StateWrites::Journal,
            )?;
            println!("run {run}: {}", report::storm_line(&storm));
        }
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(runs) = runs {
        config.brokerctl_runs = runs;
    }
    if only == Some(Only::Token) {
        let processes =
            bench::run_token_processes(&binaries, &config, |stage| eprintln!("… {stage}"))?;
        println!(
            "\nMachine: {}\nbrokerctl: {}\n",
            report::machine(),
            binaries.brokerctl.display()
        );
        print!("{}", processes.markdown());
        return Ok(ExitCode::SUCCESS);
    }
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
