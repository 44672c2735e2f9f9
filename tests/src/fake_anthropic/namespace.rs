//! Running a program offline, in a private network where the host names it
//! talks to are a fake of this test.
//!
//! Why: Claude Code's token URL (`https://platform.claude.com/v1/oauth/token`)
//! is fixed and its API host is `api.anthropic.com`, OpenClaw's are
//! `auth.openai.com` and `chatgpt.com`; no setting points them at a test
//! server. Both fakes (`fake_anthropic`, `fake_chatgpt`) use this one
//! mechanism. So the program runs in namespaces of its own
//! (`unshare(2)`: user, network, mount — what `unshare -rnm` does), where:
//!
//! * the network holds only loopback, so nothing can leave the machine;
//! * a hosts file is bind-mounted over `/etc/hosts`, mapping the host names to
//!   `127.0.0.1`;
//! * `127.0.0.1:443` is a listening socket created inside that network and
//!   handed to the test process over a socket pair (`SCM_RIGHTS`), where the
//!   fake serves it: the fake runs in the test, the program in the namespace.
//!
//! All of it happens between `fork` and `exec` (`Command::pre_exec`) with
//! plain system calls on buffers prepared before the fork, so no external
//! tool (`unshare`, `ip`) is needed. Files the program writes (the credential
//! file) are ordinary files of the test's temp dir, owned by the test's user:
//! the user namespace maps that user to itself.

use std::ffi::CString;
use std::io;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use nix::libc;

/// Prepares `cmd` like [`isolate`] and, on a thread of its own, waits for
/// the child's listener (sent between its fork and exec) and has `runtime`
/// run `serve` on it until the fake stops.
pub(crate) fn isolate_and_serve<F, Fut>(
    cmd: &mut Command,
    hosts: &Path,
    runtime: tokio::runtime::Handle,
    serve: F,
) -> io::Result<()>
where
    F: FnOnce(tokio::net::TcpListener) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let channel = isolate(cmd, hosts)?;
    std::thread::Builder::new()
        .name("fake-namespace-accept".into())
        .spawn(move || {
            let Ok(listener) = receive_listener(&channel) else {
                return;
            };
            if listener.set_nonblocking(true).is_err() {
                return;
            }
            runtime.spawn(async move {
                if let Ok(listener) = tokio::net::TcpListener::from_std(listener) {
                    serve(listener).await;
                }
            });
        })?;
    Ok(())
}

/// Whether programs can be isolated on this machine: runs `/bin/true`
/// through `command` (a fake's). `Err` explains how to allow it.
pub(crate) fn check_isolation(
    command: impl FnOnce(&Path) -> io::Result<Command>,
) -> Result<(), String> {
    let outcome = command(Path::new("/bin/true")).and_then(|mut cmd| cmd.status());
    match outcome {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => Err(format!(
            "/bin/true in the private namespaces exited {status}"
        )),
        Err(e) => Err(format!(
            "cannot run a program in private user, network and mount namespaces ({e}); \
             allow unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1, \
             and on Ubuntu 23.10+ kernel.apparmor_restrict_unprivileged_userns=0) or run as root"
        )),
    }
}

/// Prepares `cmd` to run in fresh user, network and mount namespaces with
/// `hosts` as its `/etc/hosts` and loopback up. Returns the test's end of the
/// socket pair over which the child sends its listening socket on
/// `127.0.0.1:443`; receive it with [`receive_listener`] after spawning.
pub(crate) fn isolate(cmd: &mut Command, hosts: &Path) -> io::Result<UnixStream> {
    let (ours, theirs) = UnixStream::pair()?;
    let theirs = OwnedFd::from(theirs);
    let setup = Setup::new(hosts, theirs)?;
    // SAFETY: `Setup::enter` makes only async-signal-safe system calls on
    // memory prepared before the fork.
    unsafe {
        cmd.pre_exec(move || setup.enter());
    }
    Ok(ours)
}

/// The listening socket the child of [`isolate`] created inside its network
/// namespace. Blocks until the child sent it; fails when the child could not
/// (the spawn then failed too).
pub(crate) fn receive_listener(channel: &UnixStream) -> io::Result<TcpListener> {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    let mut control = [0u64; 8];
    // SAFETY: every pointer refers to a live local buffer of the stated size.
    let fd = unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control) as _;
        let n = libc::recvmsg(channel.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC);
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        if n == 0
            || cmsg.is_null()
            || (*cmsg).cmsg_level != libc::SOL_SOCKET
            || (*cmsg).cmsg_type != libc::SCM_RIGHTS
        {
            return Err(io::Error::other(
                "the isolated child sent no listening socket (it failed before exec)",
            ));
        }
        std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>())
    };
    // SAFETY: the kernel just installed `fd` in this process for us alone.
    Ok(unsafe { TcpListener::from_raw_fd(fd) })
}

/// Everything the child needs, prepared before the fork.
struct Setup {
    uid_map: Vec<u8>,
    gid_map: Vec<u8>,
    hosts: CString,
    channel: OwnedFd,
}

const SETGROUPS: &[u8] = b"/proc/self/setgroups\0";
const UID_MAP: &[u8] = b"/proc/self/uid_map\0";
const GID_MAP: &[u8] = b"/proc/self/gid_map\0";
const ETC_HOSTS: &[u8] = b"/etc/hosts\0";
const ROOT: &[u8] = b"/\0";

impl Setup {
    fn new(hosts: &Path, channel: OwnedFd) -> io::Result<Setup> {
        // SAFETY: getuid/getgid cannot fail.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        Ok(Setup {
            // The test's own user, and only it, exists inside: files keep
            // their owner and the program does not run as root.
            uid_map: format!("{uid} {uid} 1\n").into_bytes(),
            gid_map: format!("{gid} {gid} 1\n").into_bytes(),
            hosts: CString::new(hosts.as_os_str().as_bytes())
                .map_err(|_| io::Error::other("hosts file path contains a NUL byte"))?,
            channel,
        })
    }

    /// In the child, between fork and exec.
    fn enter(&self) -> io::Result<()> {
        // SAFETY: plain system calls on valid, NUL-terminated buffers.
        unsafe {
            check(libc::unshare(
                libc::CLONE_NEWUSER | libc::CLONE_NEWNET | libc::CLONE_NEWNS,
            ))?;
            write_file(SETGROUPS, b"deny")?;
            write_file(UID_MAP, &self.uid_map)?;
            write_file(GID_MAP, &self.gid_map)?;
            // Our mounts stay ours: no propagation back to the host.
            check(libc::mount(
                std::ptr::null(),
                ROOT.as_ptr().cast(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ))?;
            check(libc::mount(
                self.hosts.as_ptr(),
                ETC_HOSTS.as_ptr().cast(),
                std::ptr::null(),
                libc::MS_BIND,
                std::ptr::null(),
            ))?;
            loopback_up()?;
            let listener = listen_on_443()?;
            let sent = send_fd(self.channel.as_raw_fd(), listener);
            libc::close(listener);
            sent
        }
    }
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Writes `data` to the NUL-terminated `path` in one `write(2)`.
unsafe fn write_file(path: &[u8], data: &[u8]) -> io::Result<()> {
    let fd = libc::open(path.as_ptr().cast(), libc::O_WRONLY | libc::O_CLOEXEC);
    check(fd)?;
    let n = libc::write(fd, data.as_ptr().cast(), data.len());
    libc::close(fd);
    if n != data.len() as isize {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A new network namespace's loopback interface starts down.
unsafe fn loopback_up() -> io::Result<()> {
    let sock = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
    check(sock)?;
    let mut ifr: libc::ifreq = std::mem::zeroed();
    for (dst, src) in ifr.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    let mut result = check(libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut ifr));
    if result.is_ok() {
        ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        result = check(libc::ioctl(sock, libc::SIOCSIFFLAGS, &ifr));
    }
    libc::close(sock);
    result
}

/// A listening TCP socket on `127.0.0.1:443` in the current network.
unsafe fn listen_on_443() -> io::Result<RawFd> {
    let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
    check(fd)?;
    let mut addr: libc::sockaddr_in = std::mem::zeroed();
    addr.sin_family = libc::AF_INET as libc::sa_family_t;
    addr.sin_port = 443u16.to_be();
    addr.sin_addr.s_addr = u32::from_be_bytes([127, 0, 0, 1]).to_be();
    let bound = check(libc::bind(
        fd,
        (&addr as *const libc::sockaddr_in).cast(),
        std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
    ))
    .and_then(|()| check(libc::listen(fd, 128)));
    if let Err(e) = bound {
        libc::close(fd);
        return Err(e);
    }
    Ok(fd)
}

/// Sends `fd` over the Unix socket `channel` (`SCM_RIGHTS`).
unsafe fn send_fd(channel: RawFd, fd: RawFd) -> io::Result<()> {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    let mut control = [0u64; 8];
    let mut msg: libc::msghdr = std::mem::zeroed();
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) as _;
    let cmsg = libc::CMSG_FIRSTHDR(&msg);
    (*cmsg).cmsg_level = libc::SOL_SOCKET;
    (*cmsg).cmsg_type = libc::SCM_RIGHTS;
    (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as _;
    std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>(), fd);
    if libc::sendmsg(channel, &msg, libc::MSG_NOSIGNAL) != 1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
