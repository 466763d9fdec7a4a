//! Sending a read to the projector partition(s) that hold its movements,
//! and merging the answers of several.
//!
//! A read of one movement goes to the partition that owns it. Listings and
//! status go to every partition; a comparison goes to each partition that
//! owns one of its movements, asking each for its own. How answers merge
//! is the read's own rule (`momentum_bus::protocol::Read::merge`).

use futures::future::join_all;
use momentum_bus::Partition;
use momentum_bus::protocol::{Asked, ProtocolError, Reach, Read, Refusal};
use momentum_domain::query::MovementId;

use crate::AppState;

/// The partitions a read goes to, each with the read it is asked.
fn route<R: Read>(count: u32, read: &R) -> Vec<(Partition, R)> {
    let owner = |movement: &MovementId| {
        Partition::of(movement.as_str(), count).expect("the partition count was checked at start")
    };
    if count == 1 {
        return vec![(Partition::WHOLE, read.clone())];
    }
    match read.reach() {
        Reach::One(movement) => vec![(owner(movement), read.clone())],
        Reach::Several(movements) => {
            let mut partitions: Vec<Partition> = movements.iter().map(owner).collect();
            partitions.sort_by_key(|partition| partition.index());
            partitions.dedup();
            if let [only] = partitions[..] {
                return vec![(only, read.clone())];
            }
            partitions
                .into_iter()
                .map(|partition| {
                    let mine = movements.iter().filter(|movement| partition.owns(movement.as_str())).cloned();
                    (partition, read.for_movements(mine.collect()))
                })
                .collect()
        }
        Reach::All => Partition::all(count)
            .expect("the partition count was checked at start")
            .into_iter()
            .map(|partition| (partition, read.clone()))
            .collect(),
    }
}

/// Sends a read to its partition(s); an error from any partition is the
/// answer, since a merge without one partition would be silently partial.
pub(crate) async fn ask<R: Read>(state: &AppState, asked: &Asked<R>) -> Result<R::Answer, Failure> {
    let parts = route(state.partitions, &asked.read);
    let asks = parts.into_iter().map(|(partition, read)| {
        let part = Asked { min_seq: asked.min_seq, read };
        async move { ask_partition(state, partition, &part).await }
    });
    let answers = join_all(asks).await.into_iter().collect::<Result<Vec<_>, Failure>>()?;
    asked.read.merge(answers).map_err(Failure::Unreadable)
}

/// Why a projector gave no usable answer.
pub(crate) enum Failure {
    /// The request could not be sent or was not answered.
    Unanswered(async_nats::RequestError),
    TimedOut,
    /// The projector refused the read.
    Refused(Refusal),
    /// An answer was not what the read answers.
    Unreadable(ProtocolError),
}

async fn ask_partition<R: Read>(
    state: &AppState,
    partition: Partition,
    asked: &Asked<R>,
) -> Result<R::Answer, Failure> {
    let asking = state.nats.request(partition.read_subject::<R>(), asked.encode());
    let started = std::time::Instant::now();
    let answered = tokio::time::timeout(state.query_timeout, asking).await;
    let labels = momentum_runtime::metrics::RouteLabels { route: R::ENDPOINT.to_owned() };
    state.metrics.projector_seconds.get_or_create(&labels).observe(started.elapsed().as_secs_f64());
    let reply = answered.map_err(|_| Failure::TimedOut)?.map_err(Failure::Unanswered)?;
    match Refusal::of_reply(&reply) {
        Some(refusal) => Err(Failure::Refused(refusal)),
        None => R::decode_answer(&reply.payload).map_err(Failure::Unreadable),
    }
}

#[cfg(test)]
mod tests {
    use momentum_bus::protocol::MovementsRequest;
    use momentum_domain::query::{CompareRequest, TrendRequest};

    use super::*;

    fn two_partitions_apart() -> (String, String) {
        let first = (0..)
            .map(|index| format!("movement-{index}"))
            .find(|movement| Partition::of(movement, 2).unwrap().index() == 0);
        let second = (0..)
            .map(|index| format!("movement-{index}"))
            .find(|movement| Partition::of(movement, 2).unwrap().index() == 1);
        (first.unwrap(), second.unwrap())
    }

    #[test]
    fn a_read_of_one_movement_goes_to_its_owner_only() {
        let (first, second) = two_partitions_apart();
        for (movement, index) in [(&first, 0), (&second, 1)] {
            let trend: TrendRequest = serde_json::from_value(serde_json::json!({
                "movement": movement, "interval": "week", "from": "2026-03-02", "to": "2026-03-02",
            }))
            .unwrap();
            let parts = route(2, &trend);
            assert_eq!(parts.len(), 1, "a trend is read from one partition");
            assert_eq!(parts[0].0.index(), index);
        }
        let whole = route(1, &MovementsRequest {});
        assert!(matches!(whole[..], [(Partition::WHOLE, _)]));
        assert_eq!(route(2, &MovementsRequest {}).len(), 2, "a listing asks every partition");
    }

    #[test]
    fn a_comparison_across_partitions_asks_each_for_its_own_movements() {
        let (first, second) = two_partitions_apart();
        let request: CompareRequest = serde_json::from_value(serde_json::json!({
            "movements": [second, first], "metric": "volunteer_hours", "interval": "week",
            "from": "2026-03-02", "to": "2026-03-02",
        }))
        .unwrap();
        let parts = route(2, &request);
        assert_eq!(parts.len(), 2);
        let names =
            |read: &CompareRequest| read.movements.as_slice().iter().map(|id| id.to_string()).collect::<Vec<_>>();
        assert_eq!(names(&parts[0].1), [first]);
        assert_eq!(names(&parts[1].1), [second]);
        assert_eq!(parts[1].1.metric, request.metric);
    }
}
