//! Splitting a bundle's blob into chunks that each fit in one message.

use flotilla_proto::v1::{BundleChunk, HubMessage, hub_message};

use crate::state::source::Blob;

/// Room left in a message for everything but the chunk's data (names, hashes, offsets). Bundle
/// names are DNS labels and revisions short, so a few hundred bytes would do.
pub(super) const OVERHEAD_BYTES: usize = 4096;

/// Smallest message limit an agent may declare: below it chunks would be absurdly small.
pub(super) const MIN_AGENT_MESSAGE_BYTES: usize = 16 * 1024;

/// The chunk size for an agent that accepts messages up to `agent_limit` bytes (0: it did not
/// say, so tonic's default of 4 MiB), never more than `max_chunk`.
pub(super) fn chunk_size(max_chunk: usize, agent_limit: usize) -> usize {
    let agent_limit = match agent_limit {
        0 => 4 * 1024 * 1024,
        n => n,
    };
    max_chunk
        .min(agent_limit.saturating_sub(OVERHEAD_BYTES))
        .max(1)
}

/// The messages carrying one bundle revision, in order. An empty blob is still one chunk, so
/// the agent always sees the bundle complete.
pub(super) fn chunks(
    bundle: &str,
    revision: &str,
    blob: &Blob,
    index: u64,
    size: usize,
) -> Vec<HubMessage> {
    let data = &blob.compressed;
    let total = data.len() as u64;
    let pieces: Vec<&[u8]> = if data.is_empty() {
        vec![&[][..]]
    } else {
        data.chunks(size.max(1)).collect()
    };
    let mut offset = 0u64;
    pieces
        .into_iter()
        .map(|piece| {
            let chunk = BundleChunk {
                bundle: bundle.to_owned(),
                revision: revision.to_owned(),
                content_hash: blob.hash.to_string(),
                total_bytes: total,
                uncompressed_bytes: blob.size,
                offset,
                data: piece.to_vec(),
                index,
            };
            offset += piece.len() as u64;
            HubMessage {
                kind: Some(hub_message::Kind::Chunk(chunk)),
            }
        })
        .collect()
}
