//! `g3proxy-worker`: the proxy engine of one generation. Started only by the supervisor, with
//! one end of a socketpair (`--ipc-fd N`) on which it receives its start message: the config
//! snapshot and the listening sockets (SCM_RIGHTS). It never binds a listener itself.
//!
//! Path of a connection: accept ([`servers`]) → server task → escaper ([`escapers`]) → resolver
//! ([`resolvers`]) → upstream, with bytes moved by [`relay`]. [`lifecycle`] runs the worker's
//! life: READY, serving, draining, exit; [`control`] lets a successor supervisor adopt it.

mod auth;
mod conn;
mod context;
mod control;
mod error;
mod escapers;
mod host_match;
mod http;
mod lifecycle;
mod log;
mod metrics;
mod pick;
mod relay;
mod resolvers;
mod servers;
mod task;

use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::process::ExitCode;

use g3proxy_shared::ipc::worker::{FromWorker, ToWorker, WorkerStart};
use g3proxy_shared::ipc::{self, fd_passing};
use g3proxy_shared::logs;
use tracing::warn;

/// glibc returns the top of the heap to the kernel as soon as 128 KiB of it is free. A proxy
/// frees and takes back its read buffers on every request, so under load that is a `brk` pair
/// every few requests and a consolidation of the free lists each time (a sixth of small
/// requests/s in `ci/bench.sh`'s reverse proxy figure). A worker keeps up to 8 MiB of free
/// heap per arena instead, and grows it 1 MiB at a time. Setting these fixes glibc's mmap
/// threshold too (it would otherwise rise by itself): it is set above the largest copy
/// buffer (`tcp_copy_buffer_size` is at most 1 MiB), so no buffer costs an mmap, a munmap
/// and zeroed pages each time a tunnel takes it back.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, 8 << 20);
        libc::mallopt(libc::M_TOP_PAD, 1 << 20);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
    }
}

fn main() -> ExitCode {
    tune_allocator();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let fd: RawFd = match args.as_slice() {
        [flag] if flag == "-V" || flag == "--version" => {
            println!("g3proxy-worker {}", g3proxy_shared::VERSION);
            return ExitCode::SUCCESS;
        }
        [flag, fd] if flag == "--ipc-fd" && fd.parse::<RawFd>().is_ok_and(|fd| fd > 2) => {
            fd.parse().unwrap_or_default()
        }
        _ => {
            eprintln!(
                "g3proxy-worker is started by the g3proxy supervisor (it needs --ipc-fd), not by hand"
            );
            return ExitCode::from(2);
        }
    };
    // The supervisor handed us this end of the socketpair and nothing else owns it.
    let link = unsafe { UnixStream::from_raw_fd(fd) };
    let mut buffer = Vec::new();
    let (start, fds) = match fd_passing::recv_frame(&link, &mut buffer) {
        Ok(Some((payload, fds))) => match ipc::decode::<ToWorker>(&payload) {
            Ok(ToWorker::Start(start)) => (*start, fds),
            Ok(other) => return fail(&link, format!("expected a start message, got {other:?}")),
            Err(e) => return fail(&link, e.to_string()),
        },
        Ok(None) => {
            return fail(
                &link,
                "supervisor closed the link before starting us".into(),
            );
        }
        Err(e) => return fail(&link, format!("reading the start message: {e}")),
    };
    logs::init(
        format!(
            "g3proxy-worker[gen {} #{} pid {}]",
            start.generation,
            start.worker_index,
            std::process::id()
        ),
        tracing::Level::WARN,
        start.verbosity,
        start.process_log,
    );
    if start.panic_quit {
        let report = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            report(info);
            if !g3proxy_shared::config::loading_on_this_thread() {
                logs::flush();
                std::process::exit(101);
            }
        }));
    }
    if let Some(cpus) = &start.cpus {
        pin_to_cpus(cpus);
    }
    let runtime = match build_runtime(&start) {
        Ok(runtime) => runtime,
        Err(e) => return fail(&link, format!("cannot build the runtime: {e}")),
    };
    let code = runtime.block_on(lifecycle::run(start, fds, link, buffer));
    // Tasks still alive log as the runtime drops them; the last events are still queued.
    drop(runtime);
    log::flush_all(std::time::Duration::from_secs(2));
    logs::flush();
    code
}

fn build_runtime(start: &WorkerStart) -> std::io::Result<tokio::runtime::Runtime> {
    let tuning = &start.runtime;
    let mut builder = if tuning.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(tuning.threads);
        builder
    };
    if let Some(name) = &tuning.thread_name {
        builder.thread_name(name);
    }
    if let Some(size) = tuning.thread_stack_size {
        builder.thread_stack_size(size);
    }
    if let Some(events) = tuning.max_io_events_per_tick {
        builder.max_io_events_per_tick(events);
    }
    builder.enable_all().build()
}

fn pin_to_cpus(cpus: &[usize]) {
    let mut set = nix::sched::CpuSet::new();
    for &cpu in cpus {
        if set.set(cpu).is_err() {
            warn!("cpu {cpu} is out of range for sched_affinity");
        }
    }
    if let Err(e) = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set) {
        warn!("sched_affinity {cpus:?} failed: {e}");
    }
}

fn fail(link: &UnixStream, error: String) -> ExitCode {
    // Straight to stderr: the process log may not exist yet, and no runtime runs to block.
    logs::flush();
    eprintln!(
        "g3proxy-worker[{}] warn: cannot start: {error}",
        std::process::id()
    );
    if let Ok(frame) = ipc::encode(&FromWorker::StartFailed { error }) {
        let _ = fd_passing::send_frame(link, &frame, &[]);
    }
    ExitCode::FAILURE
}
