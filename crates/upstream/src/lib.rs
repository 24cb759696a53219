//! Talking to other registries (being written).
