//! [`TestEnv`]: a private `$HOME` and XDG tree for one test.
//!
//! Why: the broker resolves its state, socket and config from `$HOME` and
//! `$XDG_*`. A test that inherits the developer's environment could read or
//! overwrite real credentials; one sharing a directory with another test
//! would race on its lock file. Each `TestEnv` is a fresh temporary directory
//! (mode 0700, removed on drop) with:
//!
//! ```text
//! <root>/home     HOME
//! <root>/state    XDG_STATE_HOME and --state-dir
//! <root>/run      XDG_RUNTIME_DIR; sockets live here
//! <root>/config   XDG_CONFIG_HOME; config files live here
//! <root>/data, <root>/cache   XDG_DATA_HOME, XDG_CACHE_HOME
//! <root>/logs     one log file per started process
//! ```

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use tempfile::TempDir;

/// Unix socket paths are limited to 107 bytes; leave room for
/// `/run/<account>.sock`.
const MAX_ROOT_LEN: usize = 60;

/// A throw-away environment; dropping it deletes everything (drop the
/// broker first — declare the `TestEnv` before the `BrokerProcess`).
#[derive(Debug)]
pub struct TestEnv {
    dir: TempDir,
}

impl Default for TestEnv {
    fn default() -> Self {
        Self::new()
    }
}

impl TestEnv {
    /// Creates the tree. Panics on I/O errors (nothing to recover in a test).
    pub fn new() -> Self {
        let builder = {
            let mut b = tempfile::Builder::new();
            b.prefix("obt-");
            b
        };
        let mut dir = builder.tempdir().expect("create temp dir");
        if dir.path().as_os_str().len() > MAX_ROOT_LEN {
            // A long $TMPDIR would make socket paths too long to bind.
            dir = builder.tempdir_in("/tmp").expect("create temp dir in /tmp");
        }
        let env = Self { dir };
        private_dir(env.root());
        for sub in ["home", "state", "run", "config", "data", "cache", "logs"] {
            let p = env.root().join(sub);
            fs::create_dir(&p).unwrap_or_else(|e| panic!("create {}: {e}", p.display()));
            private_dir(&p);
        }
        env
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// `<root>/<rel>`.
    pub fn path(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.root().join(rel)
    }

    pub fn home_dir(&self) -> PathBuf {
        self.path("home")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.path("state")
    }

    pub fn run_dir(&self) -> PathBuf {
        self.path("run")
    }

    pub fn config_dir(&self) -> PathBuf {
        self.path("config")
    }

    pub fn logs_dir(&self) -> PathBuf {
        self.path("logs")
    }

    /// The socket path of an account's broker: `<root>/run/<account>.sock`.
    pub fn socket_path(&self, account: &str) -> PathBuf {
        self.run_dir().join(format!("{account}.sock"))
    }

    /// Environment for any process of the test: `PATH` (inherited), `HOME`
    /// and every `XDG_*` directory inside this environment, `NO_COLOR=1`,
    /// `RUST_BACKTRACE` (inherited, else `1`). Use with `env_clear()`.
    pub fn base_env(&self) -> Vec<(String, String)> {
        let s = |p: PathBuf| p.to_string_lossy().into_owned();
        let mut v = vec![
            ("HOME".to_owned(), s(self.home_dir())),
            ("XDG_STATE_HOME".to_owned(), s(self.state_dir())),
            ("XDG_RUNTIME_DIR".to_owned(), s(self.run_dir())),
            ("XDG_CONFIG_HOME".to_owned(), s(self.config_dir())),
            ("XDG_DATA_HOME".to_owned(), s(self.path("data"))),
            ("XDG_CACHE_HOME".to_owned(), s(self.path("cache"))),
            ("NO_COLOR".to_owned(), "1".to_owned()),
            (
                "RUST_BACKTRACE".to_owned(),
                std::env::var("RUST_BACKTRACE").unwrap_or_else(|_| "1".to_owned()),
            ),
        ];
        for inherited in ["PATH", "TMPDIR", "LLVM_PROFILE_FILE"] {
            if let Ok(val) = std::env::var(inherited) {
                v.push((inherited.to_owned(), val));
            }
        }
        v
    }

    /// The contents of every log file of every process started in this
    /// environment (e.g. to grep for leaked secrets).
    pub fn all_logs(&self) -> String {
        let mut files: Vec<PathBuf> = fs::read_dir(self.logs_dir())
            .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        files.sort();
        files
            .iter()
            .map(|p| {
                format!(
                    "===== {} =====\n{}",
                    p.display(),
                    fs::read_to_string(p).unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// A new log file path `<root>/logs/<stem>-<n>.log` not used before.
    pub(crate) fn new_log_path(&self, stem: &str) -> PathBuf {
        (1..)
            .map(|n| self.logs_dir().join(format!("{stem}-{n}.log")))
            .find(|p| !p.exists())
            .expect("an unused log file name")
    }
}

fn private_dir(p: &Path) {
    fs::set_permissions(p, fs::Permissions::from_mode(0o700))
        .unwrap_or_else(|e| panic!("chmod 0700 {}: {e}", p.display()));
}
