//! The group admin API (`HubGroup`): status and membership changes, served by every node and
//! used by `flotilla-hub status` and `flotilla-hub member add|remove`; proposing an encoded
//! command and reading the state machine's image, for tools and tests.

use std::marker::PhantomData;

use flotilla_proto::v1::hub_group_client::HubGroupClient;
use flotilla_proto::v1::hub_group_server::HubGroup;
use flotilla_proto::v1::{
    GroupAddMemberRequest, GroupMember, GroupMembershipChanged, GroupProposeRequest, GroupProposed,
    GroupReadStateRequest, GroupRemoveMemberRequest, GroupStateImage, GroupStatus,
    GroupStatusRequest,
};
use tonic::{Request, Response, Status};

use crate::StateMachine;
use crate::node::{NodeHandle, NodeStatus, ProposeError};
use crate::transport::net::{self, NetError, Security};

/// Serves `HubGroup` from a node.
pub(crate) struct GroupService<S: StateMachine> {
    node: NodeHandle<S>,
}

impl<S: StateMachine> GroupService<S> {
    pub(crate) fn new(node: NodeHandle<S>) -> Self {
        GroupService { node }
    }

    fn members(&self) -> Vec<GroupMember> {
        self.node
            .state()
            .members()
            .iter()
            .map(|(id, address)| GroupMember {
                id: *id,
                address: address.clone(),
            })
            .collect()
    }
}

fn to_status<S: StateMachine>(error: ProposeError<S>) -> Status {
    match error {
        ProposeError::Rejected { .. } | ProposeError::Refused(_) => {
            Status::failed_precondition(error.to_string())
        }
        ProposeError::Encode(_) => Status::invalid_argument(error.to_string()),
        _ => Status::unavailable(error.to_string()),
    }
}

fn status_message(group: &str, status: NodeStatus) -> GroupStatus {
    GroupStatus {
        group: group.to_owned(),
        id: status.id,
        role: status.role.as_str().to_owned(),
        leader: status.leader.unwrap_or(0),
        term: status.term,
        commit: status.commit,
        applied: status.applied,
        ticks: status.ticks,
        members: status
            .members
            .into_iter()
            .map(|(id, address)| GroupMember { id, address })
            .collect(),
        state_hash: status.state_hash,
        election_tick: 0,
        first_index: status.first_index,
        last_index: status.last_index,
        disk_full: status.disk_full.unwrap_or_default(),
    }
}

#[tonic::async_trait]
impl<S: StateMachine> HubGroup for GroupService<S> {
    async fn status(
        &self,
        request: Request<GroupStatusRequest>,
    ) -> Result<Response<GroupStatus>, Status> {
        let status = if request.into_inner().state_hash {
            self.node.status_with_state_hash().await
        } else {
            self.node.status().await
        }
        .map_err(to_status)?;
        let mut message = status_message(self.node.group(), status);
        message.election_tick = self.node.timing().election_ticks as u64;
        Ok(Response::new(message))
    }

    async fn add_member(
        &self,
        request: Request<GroupAddMemberRequest>,
    ) -> Result<Response<GroupMembershipChanged>, Status> {
        let request = request.into_inner();
        if request.id == 0 || request.address.is_empty() {
            return Err(Status::invalid_argument(
                "a member needs a non-zero id and an address",
            ));
        }
        let applied = self
            .node
            .add_member(request.id, &request.address)
            .await
            .map_err(to_status)?;
        Ok(Response::new(GroupMembershipChanged {
            index: applied.index,
            members: self.members(),
        }))
    }

    async fn remove_member(
        &self,
        request: Request<GroupRemoveMemberRequest>,
    ) -> Result<Response<GroupMembershipChanged>, Status> {
        let request = request.into_inner();
        let applied = self
            .node
            .remove_member(request.id)
            .await
            .map_err(to_status)?;
        Ok(Response::new(GroupMembershipChanged {
            index: applied.index,
            members: self.members(),
        }))
    }

    async fn propose(
        &self,
        request: Request<GroupProposeRequest>,
    ) -> Result<Response<GroupProposed>, Status> {
        let command = S::decode_command(&request.into_inner().command)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let applied = self.node.propose(&command).await.map_err(to_status)?;
        Ok(Response::new(GroupProposed {
            index: applied.index,
        }))
    }

    async fn read_state(
        &self,
        request: Request<GroupReadStateRequest>,
    ) -> Result<Response<GroupStateImage>, Status> {
        if request.into_inner().linearizable {
            self.node
                .read_index()
                .await
                .map_err(|e| Status::unavailable(e.to_string()))?;
        }
        let state = self.node.state();
        // The image never carries a secret (the CA's private key): no API returns one, not even
        // to peers.
        let image = GroupStateImage {
            applied: state.applied(),
            snapshot: state
                .without_secrets()
                .snapshot()
                .map_err(|e| Status::internal(e.to_string()))?,
            state_hash: state
                .digest()
                .map_err(|e| Status::internal(e.to_string()))?,
        };
        Ok(Response::new(image))
    }
}

/// A client of a node's `HubGroup` API, for a group replicating `S`.
pub struct GroupClient<S> {
    inner: HubGroupClient<tonic::transport::Channel>,
    state: PhantomData<fn() -> S>,
}

impl<S: StateMachine> GroupClient<S> {
    /// A client for the node at `address` (HOST:PORT) of an `--insecure` group; connects on
    /// first use.
    pub fn new(address: &str) -> Result<Self, NetError> {
        Self::with_security(address, &Security::Plain)
    }

    /// A client for the node at `address` (HOST:PORT), presenting a hub identity over mutual
    /// TLS unless `security` is plain; connects on first use.
    pub fn with_security(address: &str, security: &Security) -> Result<Self, NetError> {
        Ok(GroupClient {
            inner: HubGroupClient::new(net::channel(address, security)?),
            state: PhantomData,
        })
    }

    /// The node's status.
    pub async fn status(&mut self) -> Result<GroupStatus, Status> {
        let request = GroupStatusRequest { state_hash: false };
        Ok(self.inner.status(request).await?.into_inner())
    }

    /// The node's status with the hash of its state (see `GroupStatusRequest.state_hash`).
    pub async fn status_with_state_hash(&mut self) -> Result<GroupStatus, Status> {
        let request = GroupStatusRequest { state_hash: true };
        Ok(self.inner.status(request).await?.into_inner())
    }

    /// Adds a member through the node (forwarded to the leader).
    pub async fn add_member(
        &mut self,
        id: u64,
        address: &str,
    ) -> Result<GroupMembershipChanged, Status> {
        let request = GroupAddMemberRequest {
            id,
            address: address.to_owned(),
        };
        Ok(self.inner.add_member(request).await?.into_inner())
    }

    /// Removes a member through the node (forwarded to the leader).
    pub async fn remove_member(&mut self, id: u64) -> Result<GroupMembershipChanged, Status> {
        let request = GroupRemoveMemberRequest { id };
        Ok(self.inner.remove_member(request).await?.into_inner())
    }
}

impl<S: StateMachine> GroupClient<S> {
    /// Proposes a command through the node; returns the index it applied at.
    pub async fn propose(&mut self, command: &S::Command) -> Result<u64, Status> {
        let command =
            S::encode_command(command).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let request = GroupProposeRequest { command };
        Ok(self.inner.propose(request).await?.into_inner().index)
    }

    /// The node's state machine, decoded, with the index it reflects.
    pub async fn read_state(&mut self, linearizable: bool) -> Result<(u64, S), Status> {
        let image = self
            .inner
            .read_state(GroupReadStateRequest { linearizable })
            .await?
            .into_inner();
        let state = S::restore(&image.snapshot).map_err(|e| Status::data_loss(e.to_string()))?;
        Ok((image.applied, state))
    }
}
