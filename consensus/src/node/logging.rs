//! raft-rs logs through slog; this drain forwards its records to `tracing` (target `raft`), so a
//! hub has one log stream and one filter (`RUST_LOG=raft=debug`).

use std::fmt::{self, Write as _};

use slog::{Drain, KV, Level, Never, OwnedKVList, Record};

use crate::NodeId;

/// A slog logger for the raft node `id` that writes to `tracing`.
pub(super) fn raft_logger(id: NodeId) -> slog::Logger {
    let _ = id;
    slog::Logger::root(TracingDrain, slog::o!())
}

struct TracingDrain;

impl Drain for TracingDrain {
    type Ok = ();
    type Err = Never;

    fn log(&self, record: &Record<'_>, values: &OwnedKVList) -> Result<(), Never> {
        let mut fields = Fields(String::new());
        // A failed field render only loses that field; the message itself is still logged.
        let _ = record.kv().serialize(record, &mut fields);
        let _ = values.serialize(record, &mut fields);
        let message = record.msg();
        let fields = fields.0;
        match record.level() {
            Level::Critical | Level::Error => tracing::error!(target: "raft", "{message}{fields}"),
            Level::Warning => tracing::warn!(target: "raft", "{message}{fields}"),
            Level::Info => tracing::info!(target: "raft", "{message}{fields}"),
            Level::Debug => tracing::debug!(target: "raft", "{message}{fields}"),
            Level::Trace => tracing::trace!(target: "raft", "{message}{fields}"),
        }
        Ok(())
    }
}

/// Renders slog key/values as ` key=value` pairs.
struct Fields(String);

impl slog::Serializer for Fields {
    fn emit_arguments(&mut self, key: slog::Key, val: &fmt::Arguments<'_>) -> slog::Result {
        write!(self.0, " {key}={val}").map_err(|_| slog::Error::Other)
    }
}
