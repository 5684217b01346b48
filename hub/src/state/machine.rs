//! The hub's state as the consensus tier replicates it: commands and snapshots in their
//! versioned encodings, members and the group's CA where the state keeps them, and the audit
//! trail exported as each command applies.

use std::collections::BTreeMap;

use flotilla_consensus::{NodeId, RequestId, StateMachine};
use flotilla_pki::CaPem;

use super::{Command, CommandError, DecodeError, EncodeError, SnapshotError, State, audit};

impl StateMachine for State {
    type Command = Command;
    type Rejection = CommandError;
    type EncodeError = EncodeError;
    type DecodeError = DecodeError;
    type SnapshotError = SnapshotError;

    fn encode_command(command: &Command) -> Result<Vec<u8>, EncodeError> {
        command.encode()
    }

    fn decode_command(bytes: &[u8]) -> Result<Command, DecodeError> {
        Command::decode(bytes)
    }

    fn apply_command(
        &mut self,
        command: &Command,
        request: Option<RequestId>,
    ) -> Result<(), CommandError> {
        if let Some(first) = request.and_then(|r| self.requests.get(r)) {
            return first.clone();
        }
        let audited = self.audit.next_seq();
        let applied = self.apply(command);
        if let Some(request) = request {
            self.requests.record(request, applied.clone());
        }
        // Here, not where events are proposed: apply also writes the state machine's own
        // events, and only here does each get its sequence number.
        audit::export(&self.audit, audited);
        applied
    }

    fn request_outcome(&self, request: RequestId) -> Option<Result<(), CommandError>> {
        self.requests.get(request).cloned()
    }

    fn founding(members: BTreeMap<NodeId, String>, ca: Option<CaPem>) -> Self {
        let mut state = State::bootstrap(members);
        state.pki.ca = ca;
        state
    }

    fn members(&self) -> &BTreeMap<NodeId, String> {
        &self.members
    }

    fn change_member(&mut self, id: NodeId, address: Option<String>) {
        self.apply_member_change(id, address);
    }

    fn group_ca(&self) -> Option<&CaPem> {
        self.pki.ca.as_ref()
    }

    fn snapshot(&self) -> Result<Vec<u8>, SnapshotError> {
        self.to_snapshot()
    }

    fn restore(bytes: &[u8]) -> Result<Self, SnapshotError> {
        State::from_snapshot(bytes)
    }

    fn digest(&self) -> Result<String, SnapshotError> {
        self.hash()
    }

    fn without_secrets(&self) -> Self {
        let mut state = self.clone();
        if let Some(ca) = &mut state.pki.ca {
            ca.private_key = String::new();
        }
        state
    }
}
