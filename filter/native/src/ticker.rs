//! The once-a-second tick of a configuration, on Envoy's main thread.
//!
//! The dynamic-module ABI (v0.2.0) has no timer for HTTP filters, but it has a per-configuration
//! scheduler (`envoy_dynamic_module_callback_http_filter_config_scheduler_*`): `commit` may be
//! called from any thread and makes Envoy run `on_http_filter_config_scheduled` on its main
//! thread. A [`Ticker`] is one small module thread per configuration that sleeps a second and
//! commits, so the tick itself — ramps, the guard merge, gauges, counters — runs on the main
//! thread with no stream and no request paying for it; gauges and guard transitions also move
//! when no traffic flows.
//!
//! Lifetime: [`Ticker::stop`] runs in `on_http_filter_config_destroy` and joins the thread, so
//! no module thread outlives its configuration (Envoy may `dlclose` the module after its last
//! configuration is gone). A commit racing with the destruction is harmless: Envoy's scheduler
//! only holds a weak reference to the configuration and stays allocated until the thread itself
//! drops it after its last commit.

use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crate::ffi::{ConfigScheduler, TICK_EVENT};

/// The tick period (shorter in unit tests, which drive ticks by hand and only check that the
/// thread commits).
pub const PERIOD: Duration = if cfg!(test) {
    Duration::from_millis(20)
} else {
    Duration::from_secs(1)
};

#[derive(Debug)]
pub struct Ticker {
    /// Dropping it wakes the thread, which then ends.
    stop: Sender<()>,
    thread: JoinHandle<()>,
}

impl Ticker {
    /// Starts the thread; `Err` (with the reason) if the OS refuses one.
    pub fn spawn(scheduler: ConfigScheduler) -> Result<Self, String> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = thread::Builder::new()
            .name("subset-router-tick".to_owned())
            .spawn(move || {
                // Should the configuration ever be destroyed on this very thread (Envoy's
                // scheduler briefly holds a strong reference during `commit`, so the last one
                // can be released here), `stop` cannot join it; this thread-local with a
                // destructor then keeps the module mapped until the thread has ended (glibc
                // does not unload an object while a thread has destructors registered from it).
                KEEP_LOADED.with(|_| ());
                // Ends when `stop` is dropped (`Disconnected`).
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(PERIOD) {
                    scheduler.commit(TICK_EVENT);
                }
                // `scheduler` is freed here, after its last commit.
            })
            .map_err(|e| e.to_string())?;
        Ok(Self { stop, thread })
    }

    /// Ends the thread and waits for it (unless called from it).
    pub fn stop(self) {
        let Self { stop, thread } = self;
        drop(stop);
        if thread.thread().id() != thread::current().id() {
            // A panic in the thread (there is no code that can) would only end it early.
            let _ = thread.join();
        }
    }
}

struct KeepLoaded;

impl Drop for KeepLoaded {
    fn drop(&mut self) {}
}

thread_local! {
    static KEEP_LOADED: KeepLoaded = const { KeepLoaded };
}
