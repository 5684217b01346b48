//! Controllers outside the workloads: the cloud provider's load balancers, the ingress
//! controller and the volume provisioner.

use serde_json::{Value, json};

use super::Sim;

use crate::pointer::At;

/// The address the simulated ingress controller publishes for every Ingress: that of its
/// own load balancer, so all Ingresses share it as they do behind one ingress controller.
const INGRESS_ADDRESS: &str = "172.18.255.251";

impl Sim<'_> {
    /// A LoadBalancer Service gets an address from the pool (172.18.255.1-250) unless
    /// it is made to fail; other Services have none.
    pub(super) fn service_settled(&self, fail: bool) -> Value {
        let lb = self.obj.at("/spec/type").and_then(Value::as_str) == Some("LoadBalancer");
        if lb && !fail {
            let ip = format!("172.18.255.{}", 1 + self.name().len() % 250);
            json!({"loadBalancer": {"ingress": [{"ip": ip, "ipMode": "VIP"}]}})
        } else {
            json!({"loadBalancer": {}})
        }
    }

    /// An Ingress gets the ingress controller's address, unless it is made to fail: then
    /// it never gets one, as when no controller serves its class.
    pub(super) fn ingress_settled(&self, fail: bool) -> Value {
        if fail {
            json!({"loadBalancer": {}})
        } else {
            json!({"loadBalancer": {"ingress": [{"ip": INGRESS_ADDRESS}]}})
        }
    }

    /// A claim binds with the capacity it requested, as if provisioned; made to fail, it stays
    /// Pending, as when no volume matches and no provisioner serves its class.
    pub(super) fn claim_settled(&self, fail: bool) -> Value {
        if fail {
            return json!({"phase": "Pending"});
        }
        json!({
            "phase": "Bound",
            "accessModes": self.obj.at("/spec/accessModes").cloned().unwrap_or(json!(["ReadWriteOnce"])),
            "capacity": {"storage": self.obj.at("/spec/resources/requests/storage").cloned().unwrap_or(json!("1Gi"))},
        })
    }
}
