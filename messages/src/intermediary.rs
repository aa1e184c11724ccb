//! How a station request reaches an organization: the route through broker → station →
//! organization (SPEC §5.7 order) and the station's relation to the organization.

use serde::{Deserialize, Serialize};

use crate::wire::faults::FaultCode;

/// How a station relates to an organization (and to the code of a notice).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "relation", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StationRelation {
    /// A station serving the organization (for this notice's code, when codes are mapped).
    Current,
    /// A station serving the organization, but the notice's code is routed to `expected`.
    OtherCodeStation {
        /// The station configured for the notice's code.
        expected: String,
    },
    /// A station the organization was moved away from (station migration).
    Previous,
    /// A station of the same broker that does not serve the organization.
    Unrelated,
}

/// Where a request lands, from its `idBrokerPA`, `idStation` and organization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `idBrokerPA` is not one of our brokers.
    ForeignBroker,
    /// `idStation` is not one of our stations.
    UnknownStation,
    /// The station belongs to another of our brokers, not to `idBrokerPA`.
    StationOfAnotherBroker {
        /// The station's broker.
        owner: String,
    },
    /// The organization (`idPA` or the notice's fiscal code) is not served here.
    UnknownOrganization {
        /// Its fiscal code as received.
        fiscal_code: String,
    },
    /// One of ours.
    Ours(StationRelation),
}

impl Route {
    /// The route of a receipt: collected money is refused only when it is not ours. Once the
    /// broker and the organization are ours, a station missing from the configuration or
    /// belonging to another of our brokers is accepted as [`StationRelation::Unrelated`] (and
    /// flagged); a foreign broker or organization stays refused. `organization_served`: the
    /// receipt's organization and `idPA` are both served here.
    pub fn for_receipt(self, organization_served: bool) -> Route {
        match self {
            Route::UnknownStation | Route::StationOfAnotherBroker { .. } if organization_served => {
                Route::Ours(StationRelation::Unrelated)
            }
            other => other,
        }
    }

    /// The refusal for a route that is not ours (one table for every operation), or `None`
    /// for [`Route::Ours`]. `ids` = (idBrokerPA, idStation) as received.
    pub fn refusal(&self, id_broker_pa: &str, id_station: &str) -> Option<(FaultCode, String)> {
        Some(match self {
            Route::ForeignBroker => (
                FaultCode::IdIntermediarioErrato,
                format!("idBrokerPA {id_broker_pa} is not an intermediary of this platform"),
            ),
            Route::UnknownStation => (
                FaultCode::StazioneIntErrata,
                format!("idStation {id_station} is not a station of this platform"),
            ),
            Route::StationOfAnotherBroker { owner } => (
                FaultCode::StazioneIntErrata,
                format!("idStation {id_station} belongs to broker {owner}, not {id_broker_pa}"),
            ),
            Route::UnknownOrganization { fiscal_code } => (
                FaultCode::IdDominioErrato,
                format!("organization {fiscal_code} is not served by this platform"),
            ),
            Route::Ours(_) => return None,
        })
    }
}
