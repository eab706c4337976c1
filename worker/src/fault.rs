//! Fault injection for the fault suite (`scripts/faults.sh`): compiled into debug builds only.
//!
//! `WORKER_FAULT_PANIC_ON=<text>` makes the handler panic on every job whose stored command contains
//! `<text>`, so the suite can prove that a panicking handler neither loses its message nor leaves its job
//! pending. Release builds ignore the variable and say so at start.

/// The environment variable of the panic switch.
pub const PANIC_ON: &str = "WORKER_FAULT_PANIC_ON";

/// Panics if the panic switch is set and `command` contains its text (debug builds only).
#[cfg(debug_assertions)]
pub fn panic_if_asked(command: &serde_json::Value) {
    static MARK: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let mark = MARK.get_or_init(|| std::env::var(PANIC_ON).ok().filter(|m| !m.is_empty()));
    if let Some(mark) = mark {
        if command.to_string().contains(mark.as_str()) {
            panic!("fault injection: {PANIC_ON} matched the command");
        }
    }
}

/// Release builds: no fault injection.
#[cfg(not(debug_assertions))]
pub fn panic_if_asked(_command: &serde_json::Value) {}

/// Warns when the switch is set where it has no effect.
pub fn warn_if_ignored() {
    if cfg!(not(debug_assertions)) && std::env::var_os(PANIC_ON).is_some() {
        tracing::warn!(
            variable = PANIC_ON,
            "fault injection is compiled out of release builds: ignored"
        );
    }
}
