//! Python virtual environments for taps named by a pip requirement (`pip_url`, as Meltano
//! writes it): one venv per requirement under a root directory, built once and reused.
//!
//! [`Venvs::install`] makes `<root>/<name>-<hash>/`, where `<name>` is the first requirement's
//! package name (sanitised) and `<hash>` 16 hex digits of a hash of the whole `pip_url`
//! (its words joined by single spaces), so a changed pin gets a new venv and the old one is left
//! as it was:
//! 1. `$HAKIRI_PYTHON` (default `python3`) `-m venv <dir>`;
//! 2. `<dir>/bin/pip install <each word of pip_url>`;
//! 3. the marker `<dir>/.hakiri-pip-url`, holding the `pip_url`, written only after pip
//!    succeeded and the executable is there.
//!
//! A venv whose marker matches is reused as it is; any other content of `<dir>` (a build that
//! was interrupted) is removed and built again. Two processes installing the same venv take
//! turns: the lock file `<dir>.lock` is created exclusively, holds its owner's pid, and is
//! removed when the install ends; one left by a process that died is taken over.
//!
//! pip runs with the child environment of [`crate::process`] (`PATH`, `HOME`, …) plus
//! [`PIP_ENV`]: the package index, find-links, proxy and certificate settings an operator may need.
//! See ADR 0020 for why one venv per requirement, why there, and why a lock file.

use std::fmt::Write as _;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::connector::ConnectorError;
use crate::process::{ChildProcess, ProcessSpec};

/// Variables pip gets from the reconciler's environment when they are set there, besides
/// [`crate::process::BASE_ENV`]: where to find packages and which certificates to trust.
pub const PIP_ENV: &[&str] = &[
    "PIP_INDEX_URL",
    "PIP_EXTRA_INDEX_URL",
    "PIP_FIND_LINKS",
    "PIP_NO_INDEX",
    "PIP_TRUSTED_HOST",
    "PIP_CERT",
    "PIP_DEFAULT_TIMEOUT",
    "PIP_DISABLE_PIP_VERSION_CHECK",
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
    "HTTPS_PROXY",
    "HTTP_PROXY",
    "NO_PROXY",
];

/// The venv root used when none is configured: next to the CLI's default catalog
/// (`sqlite://.hakiri/`), relative to the working directory.
pub const DEFAULT_ROOT: &str = ".hakiri/venvs";

/// The marker written into a venv once pip succeeded; it holds the `pip_url`.
const MARKER: &str = ".hakiri-pip-url";

/// How long an install waits for another process's install of the same venv.
const LOCK_WAIT: Duration = Duration::from_secs(30 * 60);

/// How often a waiting install looks at the lock again.
const LOCK_POLL: Duration = Duration::from_millis(250);

/// The virtual environments under one root directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Venvs {
    root: PathBuf,
    python: PathBuf,
}

/// A venv that [`Venvs::list`] found built.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Installed {
    /// The requirement(s) it was built from, as the marker records them.
    pub pip_url: String,
    /// Its directory.
    pub dir: PathBuf,
    /// The programs its packages installed in `bin/` (pip, python and activation scripts left
    /// out), sorted.
    pub executables: Vec<String>,
}

/// What [`Venvs::install`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installation {
    /// The executable's path in the venv.
    pub executable: PathBuf,
    /// Whether it was built now (false: it was there already).
    pub built: bool,
}

impl Default for Venvs {
    /// Venvs under [`DEFAULT_ROOT`].
    fn default() -> Self {
        Self::new(DEFAULT_ROOT)
    }
}

impl Venvs {
    /// The venvs under `root` (created when the first one is installed). The interpreter that
    /// builds them is `$HAKIRI_PYTHON`, read now, else `python3` looked up on `PATH`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let python = std::env::var_os("HAKIRI_PYTHON")
            .filter(|p| !p.is_empty())
            .map_or_else(|| PathBuf::from("python3"), PathBuf::from);
        Self {
            root: root.into(),
            python,
        }
    }

    /// Builds venvs with `python` instead (a path, or a name looked up on `PATH`).
    #[must_use]
    pub fn with_python(mut self, python: impl Into<PathBuf>) -> Self {
        self.python = python.into();
        self
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory the venv of `pip_url` lives in, built or not.
    ///
    /// # Errors
    /// A permanent error when `pip_url` names no requirement.
    pub fn dir(&self, pip_url: &str) -> Result<PathBuf, ConnectorError> {
        Ok(self.root.join(dir_name(pip_url)?))
    }

    /// The venv of `pip_url`, built if it is not yet, and the path of `executable` in it.
    /// Idempotent: a venv whose marker records this `pip_url` is reused without running
    /// anything; safe to call from several processes at once (they take turns).
    ///
    /// # Errors
    /// Permanent, with a hint: the interpreter cannot be run or cannot make venvs, pip fails
    /// (its stderr's end is in the message), or the packages installed no `executable`.
    /// Transient: the root cannot be written, or another install held the lock too long.
    pub async fn install(
        &self,
        pip_url: &str,
        executable: &str,
    ) -> Result<Installation, ConnectorError> {
        let dir = self.dir(pip_url)?;
        let pip_url = normalise(pip_url);
        let program = dir.join("bin").join(executable);
        let done = |built| Installation {
            executable: program.clone(),
            built,
        };
        if self.is_built(&dir, &pip_url) {
            return self
                .check_executable(&dir, &program, executable)
                .map(|()| done(false));
        }
        std::fs::create_dir_all(&self.root).map_err(|e| {
            ConnectorError::transient(format!(
                "cannot create the venv directory {}: {e}",
                self.root.display()
            ))
        })?;
        let _lock = Lock::acquire(lock_path(&dir)).await?;
        // Another process may have built it while this one waited for the lock.
        if self.is_built(&dir, &pip_url) {
            return self
                .check_executable(&dir, &program, executable)
                .map(|()| done(false));
        }
        tracing::info!(pip_url, dir = %dir.display(), "building a venv");
        let started = Instant::now();
        if dir.exists() {
            // A build that did not finish: what it left may be half a venv.
            std::fs::remove_dir_all(&dir).map_err(|e| {
                ConnectorError::transient(format!(
                    "cannot remove the unfinished venv {}: {e}",
                    dir.display()
                ))
            })?;
        }
        self.make_venv(&dir).await?;
        self.pip_install(&dir, &pip_url).await?;
        self.check_executable(&dir, &program, executable)?;
        write_marker(&dir, &pip_url).map_err(|e| {
            ConnectorError::transient(format!("cannot write the marker in {}: {e}", dir.display()))
        })?;
        tracing::info!(pip_url, dir = %dir.display(), seconds = started.elapsed().as_secs_f64(), "venv built");
        Ok(done(true))
    }

    /// The venvs built under the root, by directory name. A missing root holds none.
    ///
    /// # Errors
    /// The root exists but cannot be read.
    pub fn list(&self) -> io::Result<Vec<Installed>> {
        let entries = match std::fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut installed = Vec::new();
        for entry in entries {
            let dir = entry?.path();
            let Ok(pip_url) = std::fs::read_to_string(dir.join(MARKER)) else {
                continue;
            };
            installed.push(Installed {
                pip_url,
                executables: executables(&dir.join("bin")),
                dir,
            });
        }
        installed.sort_by(|a, b| a.dir.cmp(&b.dir));
        Ok(installed)
    }

    fn is_built(&self, dir: &Path, pip_url: &str) -> bool {
        std::fs::read_to_string(dir.join(MARKER)).is_ok_and(|marker| marker == pip_url)
    }

    fn check_executable(
        &self,
        dir: &Path,
        program: &Path,
        executable: &str,
    ) -> Result<(), ConnectorError> {
        if program.is_file() {
            return Ok(());
        }
        let found = executables(&dir.join("bin"));
        Err(ConnectorError::permanent(format!(
            "the venv {} has no executable {executable:?} (its packages installed: {}); \
             set \"executable\" to one of them",
            dir.display(),
            if found.is_empty() {
                "none".to_owned()
            } else {
                found.join(", ")
            }
        )))
    }

    async fn make_venv(&self, dir: &Path) -> Result<(), ConnectorError> {
        let python = self.python.display();
        let spec = ProcessSpec::new(&self.python, "venv")
            .args(["-m", "venv"])
            .arg(dir);
        let exit = match ChildProcess::spawn(spec) {
            Ok(mut child) => drain(&mut child).await?,
            Err(e) => {
                return Err(ConnectorError::permanent(format!(
                    "{e}: Python 3 is needed to install taps from a pip_url; install it \
                     (Debian: apt-get install python3 python3-venv) or point HAKIRI_PYTHON at \
                     an interpreter"
                )))
            }
        };
        if exit.success() {
            return Ok(());
        }
        // Whatever it made is not a venv to reuse.
        let _ = std::fs::remove_dir_all(dir);
        Err(ConnectorError::permanent(format!(
            "{python} -m venv {} failed ({}): {}\nhint: check that this Python can make virtual \
             environments with pip (Debian: apt-get install python3-venv), or set HAKIRI_PYTHON",
            dir.display(),
            exit.status,
            exit.stderr_tail.trim_end()
        )))
    }

    async fn pip_install(&self, dir: &Path, pip_url: &str) -> Result<(), ConnectorError> {
        let pip = dir.join("bin").join("pip");
        let spec = PIP_ENV.iter().fold(
            ProcessSpec::new(&pip, "pip").args(["install", "--disable-pip-version-check"]),
            |spec, name| spec.inherit_env(name),
        );
        let mut child = ChildProcess::spawn(spec.args(pip_url.split_whitespace()))?;
        let exit = drain(&mut child).await?;
        if exit.success() {
            return Ok(());
        }
        Err(ConnectorError::permanent(format!(
            "pip install {pip_url} failed ({}); the end of its stderr:\n{}\nhint: check the \
             requirement's name and version on the package index (PIP_INDEX_URL, \
             PIP_FIND_LINKS); the next install builds the venv afresh",
            exit.status,
            last_chars(exit.stderr_tail.trim_end(), 2000)
        )))
    }
}

/// Reads a child's stdout to its end (logged at debug: pip's progress), then waits for it.
async fn drain(child: &mut ChildProcess) -> Result<crate::process::Exit, ConnectorError> {
    while let Some(line) = child.next_line().await? {
        tracing::debug!(
            program = child.program(),
            "{}",
            String::from_utf8_lossy(&line)
        );
    }
    Ok(child.wait().await?)
}

/// The `pip_url`'s words joined by single spaces: the form that is hashed and recorded.
fn normalise(pip_url: &str) -> String {
    pip_url.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The package name a requirement installs: `tap-jsonl` from `tap-jsonl==0.3.1`,
/// `tap-x[extra]>=1`, or `git+https://…#egg=tap-x`; `None` for a URL or path without an
/// `#egg=` (its name is only known once pip reads it).
pub fn package_name(requirement: &str) -> Option<&str> {
    if let Some((_, egg)) = requirement.split_once("#egg=") {
        let egg = egg.split('&').next().unwrap_or_default();
        return (!egg.is_empty()).then_some(egg);
    }
    if requirement.contains("://") || requirement.starts_with(['.', '/', '-']) {
        return None;
    }
    let end = requirement
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        .unwrap_or(requirement.len());
    let name = &requirement[..end];
    (!name.is_empty()).then_some(name)
}

/// `<sanitised package name>-<16 hex digits of FNV-1a of the normalised pip_url>`.
fn dir_name(pip_url: &str) -> Result<String, ConnectorError> {
    let pip_url = normalise(pip_url);
    let Some(first) = pip_url.split_whitespace().find(|w| !w.starts_with('-')) else {
        return Err(ConnectorError::permanent(
            "pip_url names no requirement (write one as pip would take it, e.g. tap-jsonl==0.3.1)",
        ));
    };
    let mut name: String = package_name(first)
        .unwrap_or("venv")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    // FNV-1a: stable across Rust versions and builds (std's hasher is not), and a venv's
    // name must not change under an installed tap.
    let hash = pip_url
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        });
    let _ = write!(name, "-{hash:016x}");
    Ok(name)
}

/// The programs in a venv's `bin/`, without the venv's own.
fn executables(bin: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(bin)
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| {
            !(name.starts_with("python")
                || name.starts_with("pip")
                || name.starts_with("activate")
                || name.starts_with("Activate")
                || name.starts_with("__"))
        })
        .collect();
    names.sort();
    names
}

/// Writes the marker through a temporary file and a rename: a crash leaves no partial marker
/// that could read as a finished build.
fn write_marker(dir: &Path, pip_url: &str) -> io::Result<()> {
    let tmp = dir.join(format!("{MARKER}.tmp"));
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(pip_url.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, dir.join(MARKER))
}

/// The last `n` bytes of `text` (or a little fewer, at a character boundary).
fn last_chars(text: &str, n: usize) -> &str {
    let mut start = text.len().saturating_sub(n);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// `<dir>.lock`, beside the venv (not `Path::with_extension`, which would cut a name such as
/// `my.tap-<hash>` at its dot and give two venvs one lock).
fn lock_path(dir: &Path) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    dir.with_file_name(name)
}

/// An exclusive lock on one venv: a file created with `create_new` (atomic on local file
/// systems), holding the owner's pid; removed when dropped.
struct Lock {
    path: PathBuf,
}

impl Lock {
    async fn acquire(path: PathBuf) -> Result<Self, ConnectorError> {
        let deadline = Instant::now() + LOCK_WAIT;
        let mut logged = false;
        loop {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut file) => {
                    let _ = write!(file, "{}", std::process::id());
                    return Ok(Self { path });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    return Err(ConnectorError::transient(format!(
                        "cannot create the lock {}: {e}",
                        path.display()
                    )))
                }
            }
            if owner_is_gone(&path) {
                tracing::warn!(lock = %path.display(), "taking over the lock of an install whose process is gone");
                let _ = std::fs::remove_file(&path);
                continue;
            }
            if !logged {
                tracing::info!(lock = %path.display(), "waiting for another install of this venv");
                logged = true;
            }
            if Instant::now() >= deadline {
                return Err(ConnectorError::transient(format!(
                    "another process has been installing into this venv for {} min (lock {}); \
                     if none is, remove the lock",
                    LOCK_WAIT.as_secs() / 60,
                    path.display()
                )));
            }
            tokio::time::sleep(LOCK_POLL).await;
        }
    }
}

/// Whether the lock's owner (the pid it holds) has exited. An empty or unreadable lock is
/// being written by its owner right now: not gone.
fn owner_is_gone(path: &Path) -> bool {
    let Some(pid) = std::fs::read_to_string(path)
        .ok()
        .and_then(|text| text.trim().parse::<i32>().ok())
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    matches!(
        rustix::process::test_kill_process(pid),
        Err(rustix::io::Errno::SRCH)
    )
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_names_come_from_the_first_requirement() {
        assert_eq!(package_name("tap-jsonl==0.3.1"), Some("tap-jsonl"));
        assert_eq!(package_name("tap_x[s3]>=1,<2"), Some("tap_x"));
        assert_eq!(package_name("tap-x ; python_version>'3'"), Some("tap-x"));
        assert_eq!(
            package_name("git+https://github.com/o/tap-x.git@v1#egg=tap-x"),
            Some("tap-x")
        );
        assert_eq!(package_name("https://example.com/tap.whl"), None);
        assert_eq!(package_name("./taps/tap-x"), None);
    }

    #[test]
    fn a_venv_is_named_by_its_package_and_a_hash_of_the_whole_pip_url() {
        let a = dir_name("tap-jsonl==0.3.1").unwrap();
        assert!(a.starts_with("tap-jsonl-"), "{a}");
        assert_eq!(a.len(), "tap-jsonl-".len() + 16, "{a}");
        // Whitespace does not matter; every word does.
        assert_eq!(dir_name("  tap-jsonl==0.3.1 \n").unwrap(), a);
        assert_ne!(dir_name("tap-jsonl==0.3.2").unwrap(), a);
        let two = dir_name("tap-jsonl==0.3.1 requests==2.32.3").unwrap();
        assert!(two.starts_with("tap-jsonl-") && two != a, "{two}");
        // Stable: an installed venv must keep its name across builds of hakiri.
        assert_eq!(
            a,
            "tap-jsonl-".to_owned() + &format!("{:016x}", fnv("tap-jsonl==0.3.1"))
        );
        assert!(dir_name("Tap/../X==1").unwrap().starts_with("tap-"));
        assert!(dir_name("https://x/y.whl").unwrap().starts_with("venv-"));
        assert!(dir_name("  ").is_err());
        assert!(dir_name("--pre").is_err());
    }

    fn fnv(text: &str) -> u64 {
        let mut hash = 0xcbf2_9ce4_8422_2325_u64;
        for byte in text.bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        hash
    }

    #[test]
    fn list_shows_only_venvs_whose_marker_was_written() {
        let root = tempfile::tempdir().unwrap();
        let venvs = Venvs::new(root.path());
        assert!(venvs.list().unwrap().is_empty());
        let done = venvs.dir("tap-a==1").unwrap();
        std::fs::create_dir_all(done.join("bin")).unwrap();
        for name in ["tap-a", "python3", "pip", "activate"] {
            std::fs::write(done.join("bin").join(name), "").unwrap();
        }
        write_marker(&done, "tap-a==1").unwrap();
        let unfinished = venvs.dir("tap-b==1").unwrap();
        std::fs::create_dir_all(unfinished.join("bin")).unwrap();
        let listed = venvs.list().unwrap();
        assert_eq!(
            listed,
            [Installed {
                pip_url: "tap-a==1".into(),
                dir: done,
                executables: vec!["tap-a".into()],
            }]
        );
    }

    #[tokio::test]
    async fn a_missing_python_is_a_permanent_error_that_says_what_to_do() {
        let root = tempfile::tempdir().unwrap();
        let venvs = Venvs::new(root.path()).with_python("/nonexistent/python3");
        let error = venvs.install("tap-a==1", "tap-a").await.unwrap_err();
        let ConnectorError::Failed { message, retryable } = &error else {
            panic!("{error:?}");
        };
        assert!(!retryable, "{message}");
        assert!(message.contains("/nonexistent/python3"), "{message}");
        assert!(message.contains("HAKIRI_PYTHON"), "{message}");
        // The lock was released.
        assert!(!lock_path(&venvs.dir("tap-a==1").unwrap()).exists());
    }

    #[test]
    fn each_venv_has_a_lock_of_its_own_beside_it() {
        assert_eq!(
            lock_path(Path::new("/v/my.tap-0123")),
            Path::new("/v/my.tap-0123.lock")
        );
        assert_ne!(
            lock_path(Path::new("/v/my.tap-1")),
            lock_path(Path::new("/v/my.other-2"))
        );
    }

    #[tokio::test]
    async fn a_lock_left_by_a_dead_process_is_taken_over_and_a_live_one_waited_for() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lock");
        // No process has pid i32::MAX (pid_max is at most 2^22).
        std::fs::write(&path, i32::MAX.to_string()).unwrap();
        let lock = Lock::acquire(path.clone()).await.unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            std::process::id().to_string()
        );
        // Held by a live process (this one): a second acquire waits until it is released.
        let waiter = tokio::spawn(Lock::acquire(path.clone()));
        tokio::time::sleep(LOCK_POLL * 3).await;
        assert!(!waiter.is_finished());
        drop(lock);
        let second = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        drop(second);
        assert!(!path.exists());
    }
}
