//! Generated code for the Tenure APIs. Nothing here is written by hand except
//! these re-exports.

/// Encoded `FileDescriptorSet` of every Tenure proto, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("tenure_descriptor");

pub mod common {
    pub mod v1 {
        tonic::include_proto!("tenure.common.v1");
    }
}

pub mod ingestion {
    pub mod v1 {
        tonic::include_proto!("tenure.ingestion.v1");
    }
}

pub mod health {
    pub mod v1 {
        tonic::include_proto!("tenure.health.v1");
    }
}

pub mod renewals {
    pub mod v1 {
        tonic::include_proto!("tenure.renewals.v1");
    }
}

pub mod playbooks {
    pub mod v1 {
        tonic::include_proto!("tenure.playbooks.v1");
    }
}
