//! The Flotilla hub: Raft-replicated state, controllers and services.
