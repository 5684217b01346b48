//! Putting a bundle back together from the hub's chunks, and checking it: decompressed to
//! the announced size, hashing to the announced hash, decoding as a rendered bundle.

use flotilla_core::ContentHash;
use flotilla_core::render::RenderedBundle;
use flotilla_core::spec::DriftMode as SpecDriftMode;
use flotilla_proto::v1::BundleChunk;

use crate::bundle::{BundleRevision, DriftMode};

/// Namespace the engine gives namespaced objects that name none. Rendering has already given
/// them the bundle's namespace when it declares one; the rest land where kubectl would put them.
const DEFAULT_NAMESPACE: &str = "default";

/// Why chunks do not make a bundle.
#[derive(Debug, thiserror::Error)]
pub enum AssemblyError {
    /// A chunk does not continue the bundle being received: the stream is out of step.
    #[error(
        "chunk of bundle '{bundle}' at offset {offset} does not continue the bundle being received"
    )]
    OutOfOrder {
        /// The chunk's bundle.
        bundle: String,
        /// Its offset.
        offset: u64,
    },
    /// The bundle is larger than the agent accepts.
    #[error("bundle '{bundle}' is {size} bytes, more than the {limit} this agent accepts")]
    TooLarge {
        /// The bundle.
        bundle: String,
        /// Its announced size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The bundle arrived whole but is not usable.
    #[error("bundle '{bundle}' is unusable: {problem}")]
    Unusable {
        /// The bundle.
        bundle: String,
        /// What is wrong.
        problem: String,
    },
}

impl AssemblyError {
    /// Whether the stream itself is broken (as opposed to one bad bundle on a sound stream).
    pub fn breaks_stream(&self) -> bool {
        matches!(self, AssemblyError::OutOfOrder { .. })
    }
}

/// A bundle received whole and decoded.
#[derive(Debug)]
pub(crate) struct Received {
    /// The revision to hand to the engine.
    pub(crate) revision: BundleRevision,
    /// Compressed bytes received.
    pub(crate) bytes: u64,
}

/// The bundle being received, if any.
#[derive(Debug)]
pub(crate) struct Assembler {
    current: Option<Partial>,
    /// A bundle refused at its first chunk (bundle, hash): its other chunks are let pass.
    skipping: Option<(String, String)>,
    max_bundle_bytes: u64,
}

#[derive(Debug)]
struct Partial {
    bundle: String,
    revision: String,
    content_hash: String,
    total: u64,
    uncompressed: u64,
    data: Vec<u8>,
}

impl Assembler {
    /// Accepts bundles of at most `max_bundle_bytes`, compressed or not.
    pub(crate) fn new(max_bundle_bytes: u64) -> Self {
        Assembler {
            current: None,
            skipping: None,
            max_bundle_bytes,
        }
    }

    /// Takes the next chunk; returns the bundle once its last chunk arrived. A bundle that
    /// fails its checks is an error for that bundle only; the next bundle starts afresh.
    pub(crate) fn add(&mut self, chunk: BundleChunk) -> Result<Option<Received>, AssemblyError> {
        if chunk.offset == 0 {
            self.skipping = None;
            match self.start(&chunk) {
                Ok(partial) => self.current = Some(partial),
                Err(e) => {
                    self.current = None;
                    self.skipping = Some((chunk.bundle.clone(), chunk.content_hash.clone()));
                    return Err(e);
                }
            }
        } else if self
            .skipping
            .as_ref()
            .is_some_and(|(bundle, hash)| *bundle == chunk.bundle && *hash == chunk.content_hash)
        {
            if chunk.offset + chunk.data.len() as u64 >= chunk.total_bytes {
                self.skipping = None;
            }
            return Ok(None);
        }
        let Some(partial) = self.current.as_mut() else {
            return Err(AssemblyError::OutOfOrder {
                bundle: chunk.bundle,
                offset: chunk.offset,
            });
        };
        if partial.bundle != chunk.bundle
            || partial.content_hash != chunk.content_hash
            || partial.data.len() as u64 != chunk.offset
            || partial.data.len() as u64 + chunk.data.len() as u64 > partial.total
        {
            self.current = None;
            return Err(AssemblyError::OutOfOrder {
                bundle: chunk.bundle,
                offset: chunk.offset,
            });
        }
        partial.data.extend_from_slice(&chunk.data);
        if (partial.data.len() as u64) < partial.total {
            return Ok(None);
        }
        let Some(partial) = self.current.take() else {
            return Ok(None);
        };
        let bytes = partial.total;
        let revision = partial.decode()?;
        Ok(Some(Received { revision, bytes }))
    }

    fn start(&self, chunk: &BundleChunk) -> Result<Partial, AssemblyError> {
        let size = chunk.total_bytes.max(chunk.uncompressed_bytes);
        if size > self.max_bundle_bytes {
            return Err(AssemblyError::TooLarge {
                bundle: chunk.bundle.clone(),
                size,
                limit: self.max_bundle_bytes,
            });
        }
        Ok(Partial {
            bundle: chunk.bundle.clone(),
            revision: chunk.revision.clone(),
            content_hash: chunk.content_hash.clone(),
            total: chunk.total_bytes,
            uncompressed: chunk.uncompressed_bytes,
            data: Vec::with_capacity(usize::try_from(chunk.total_bytes).unwrap_or(0)),
        })
    }
}

impl Partial {
    fn decode(self) -> Result<BundleRevision, AssemblyError> {
        let unusable = |problem: String| AssemblyError::Unusable {
            bundle: self.bundle.clone(),
            problem,
        };
        let expected: ContentHash = self
            .content_hash
            .parse()
            .map_err(|e: flotilla_core::hash::InvalidContentHash| unusable(e.to_string()))?;
        let capacity = usize::try_from(self.uncompressed).map_err(|e| unusable(e.to_string()))?;
        let content = zstd::bulk::decompress(&self.data, capacity)
            .map_err(|e| unusable(format!("zstd: {e}")))?;
        if content.len() as u64 != self.uncompressed {
            return Err(unusable(format!(
                "decompressed to {} bytes, {} announced",
                content.len(),
                self.uncompressed
            )));
        }
        let rendered =
            RenderedBundle::from_blob(&content, &expected).map_err(|e| unusable(e.to_string()))?;
        if rendered.bundle != self.bundle {
            return Err(unusable(format!(
                "the blob is bundle '{}', sent as '{}'",
                rendered.bundle, self.bundle
            )));
        }
        Ok(BundleRevision {
            name: self.bundle.clone(),
            revision: self.revision.clone(),
            content_hash: self.content_hash.clone(),
            // Objects arrive with their namespaces set; this one is created when missing (a
            // chart's release namespace), owned by no bundle.
            namespace: rendered
                .create_namespace
                .clone()
                .unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned()),
            drift: match rendered.drift {
                SpecDriftMode::Correct => DriftMode::Correct,
                SpecDriftMode::Report => DriftMode::Report,
            },
            objects: rendered.objects.into_iter().map(|o| o.object).collect(),
            allow: rendered.allow,
        })
    }
}
