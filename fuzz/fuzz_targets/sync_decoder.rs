//! The bytes that arrive from the network: the Sync protocol's messages in both directions and
//! the raft peer frames (prost), and rendered bundle blobs as agents receive them. Decoding
//! must refuse or succeed without panicking, and whatever decodes must re-encode to a message
//! that decodes to the same value.

#![no_main]

use flotilla_core::{ContentHash, RenderedBundle};
use flotilla_proto::v1::{
    AgentMessage, HubMessage, PeerForwardRequest, PeerSnapshotChunk, RaftBatch,
};
use libfuzzer_sys::fuzz_target;
use prost::Message;

fn round_trip<M: Message + Default + PartialEq + std::fmt::Debug>(data: &[u8]) {
    if let Ok(message) = M::decode(data) {
        let again =
            M::decode(message.encode_to_vec().as_slice()).expect("a re-encoded message decodes");
        assert_eq!(again, message, "decode(encode(m)) != m");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    match selector % 6 {
        0 => round_trip::<AgentMessage>(body),
        1 => round_trip::<HubMessage>(body),
        2 => round_trip::<RaftBatch>(body),
        3 => round_trip::<PeerSnapshotChunk>(body),
        4 => round_trip::<PeerForwardRequest>(body),
        _ => {
            // The hash matches (the agent checks it first), so the blob's JSON is what is
            // exercised.
            if let Ok(bundle) = RenderedBundle::from_blob(body, &ContentHash::of(body)) {
                let blob = bundle.to_blob();
                RenderedBundle::from_blob(&blob, &ContentHash::of(&blob))
                    .expect("a re-encoded bundle decodes");
            }
        }
    }
});
