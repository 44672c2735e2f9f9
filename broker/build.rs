//! Links `brokerctl` statically (glibc, static PIE) on Linux/glibc.
//!
//! Why: `brokerctl token` is a whole process per token (an `auth.command` hook
//! runs it before every API call), and for a process that lives about a
//! millisecond the dynamic loader is the largest single cost: mapping libc and
//! libgcc_s and resolving their symbols is most of the instructions and half
//! of the system calls of a Rust program that does nothing (README
//! "Performance" has the counts). `brokerd` stays dynamic: it starts once.
//!
//! How: cargo has no per-binary `-C target-feature=+crt-static` (a
//! workspace-wide flag also reaches proc-macros, which cannot be static, unless
//! every build passes `--target`). So this script asks the linker for a static
//! PIE for `brokerctl` only, and, because rustc still names the shared
//! libraries it would link dynamically (`-lgcc_s -lm -lc`), puts first on the
//! library path three one-line linker scripts under those names that point at
//! the static archives (`libgcc_eh.a`, `libm.a`, `libc.a`) — exactly the
//! libraries rustc itself links for `crt-static`.
//!
//! When the C toolchain lacks a static archive (no `libc6-dev`), the script
//! warns and `brokerctl` is linked dynamically as before; setting
//! `OAUTH_BROKER_BROKERCTL_LINK=dynamic` does the same on purpose (to measure
//! the difference). Nothing in `brokerctl` needs glibc's NSS: it reads the
//! environment, not the user database, except `brokerctl service` when `HOME`
//! is unset, where glibc warns at link time that `getpwuid_r` loads NSS
//! modules at run time (they are found when the system's glibc is the one
//! `brokerctl` was built with).

use std::path::{Path, PathBuf};
use std::process::Command;

/// Opt-out for measurements: `dynamic` links `brokerctl` like any Rust binary.
const LINK_ENV: &str = "OAUTH_BROKER_BROKERCTL_LINK";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed={LINK_ENV}");
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    if var("CARGO_CFG_TARGET_OS") != "linux" || var("CARGO_CFG_TARGET_ENV") != "gnu" {
        return;
    }
    // Already static (`-C target-feature=+crt-static` with `--target`).
    if var("CARGO_CFG_TARGET_FEATURE")
        .split(',')
        .any(|f| f == "crt-static")
    {
        return;
    }
    if var(LINK_ENV) == "dynamic" {
        return;
    }
    let linker = std::env::var("RUSTC_LINKER").unwrap_or_else(|_| "cc".to_owned());
    let find = |name: &str| archive(&linker, name);
    let (Some(gcc_eh), Some(gcc), Some(libm), Some(libc), Some(_)) = (
        find("libgcc_eh.a"),
        find("libgcc.a"),
        find("libm.a"),
        find("libc.a"),
        find("rcrt1.o"),
    ) else {
        println!(
            "cargo:warning=brokerctl is linked dynamically: `{linker}` has no static glibc \
             (install libc6-dev) — it works, only starts slower"
        );
        return;
    };
    let dir = PathBuf::from(var("OUT_DIR")).join("brokerctl-static");
    std::fs::create_dir_all(&dir).expect("creating OUT_DIR/brokerctl-static");
    let script = |name: &str, text: String| {
        std::fs::write(dir.join(name), text + "\n").expect("writing a linker script");
    };
    script("libgcc_s.so", format!("INPUT({})", gcc_eh.display()));
    script("libm.so", format!("INPUT({})", libm.display()));
    script(
        "libc.so",
        format!(
            "GROUP({} {} {})",
            libc.display(),
            gcc_eh.display(),
            gcc.display()
        ),
    );
    println!("cargo:rustc-link-arg-bin=brokerctl=-static-pie");
    println!("cargo:rustc-link-arg-bin=brokerctl=-L{}", dir.display());
}

/// The path of a file the C compiler links with, if it has one
/// (`cc -print-file-name` echoes the bare name when it does not).
fn archive(linker: &str, name: &str) -> Option<PathBuf> {
    let out = Command::new(linker)
        .arg(format!("-print-file-name={name}"))
        .output()
        .ok()?;
    let path = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    (path.is_absolute() && Path::new(&path).is_file()).then_some(path)
}
