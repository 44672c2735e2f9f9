//! A stand-in for `brokerd`, used only by this crate's harness tests.
//!
//! It accepts the same command line (`--config --account --socket
//! --state-dir`), prints its arguments and environment to stdout (so tests
//! can check isolation), and then behaves as `STUB_MODE` says:
//! * unset / `serve`: bind the socket and accept connections until killed;
//! * `exit`: print an error to stderr and exit with status 3;
//! * `ignore-term`: like `serve` but ignoring SIGTERM (tests SIGKILL escalation).
//!
//! Called like `brokerctl` (first argument `--socket`), it prints its
//! arguments, environment and standard input, and exits with status 2.

use std::os::unix::net::UnixListener;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--socket") {
        act_as_brokerctl(&args);
    }
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    println!("stub-brokerd args: {args:?}");
    print_env();
    let mode = std::env::var("STUB_MODE").unwrap_or_else(|_| "serve".to_owned());
    if mode == "exit" {
        eprintln!("stub-brokerd: failing on purpose");
        std::process::exit(3);
    }
    if mode == "ignore-term" {
        // SAFETY: setting SIG_IGN installs no handler code.
        unsafe {
            nix::sys::signal::signal(
                nix::sys::signal::Signal::SIGTERM,
                nix::sys::signal::SigHandler::SigIgn,
            )
        }
        .expect("ignore SIGTERM");
    }
    let socket = arg("--socket").expect("--socket");
    // A stale socket from a killed predecessor (the real broker probes it first).
    let _ = std::fs::remove_file(&socket);
    let listener = UnixListener::bind(&socket).expect("bind socket");
    println!("stub-brokerd ready on {socket}");
    for conn in listener.incoming() {
        drop(conn);
    }
}

fn print_env() {
    let mut vars: Vec<(String, String)> = std::env::vars().collect();
    vars.sort();
    for (k, v) in vars {
        println!("env {k}={v}");
    }
}

fn act_as_brokerctl(args: &[String]) -> ! {
    use std::io::Read as _;
    println!("args: {}", args.join(" "));
    print_env();
    let mut input = String::new();
    let _ = std::io::stdin().read_to_string(&mut input);
    println!("stdin: {input}");
    std::process::exit(2);
}
