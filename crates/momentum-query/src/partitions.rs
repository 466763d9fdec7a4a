//! Sending a read to the projector partition(s) that hold its movements,
//! and merging the answers of several.
//!
//! A read of one movement goes to the partition that owns it. Listings and
//! status go to every partition; a comparison goes to each partition that
//! owns one of its movements. Merged answers keep the shape of one
//! projector's: movements in id order, comparison series in the order
//! asked, and the lowest watermark of the partitions that answered (every
//! one of them has applied at least that much of the stream).

use bytes::Bytes;
use futures::future::join_all;
use momentum_bus::{Partition, QueryEndpoint};
use momentum_domain::query::{Comparison, MovementList, Status};
use serde_json::Value;

use crate::AppState;

/// A read's way to the projectors: to one partition, or to several whose
/// answers are merged.
enum Route {
    One(Partition),
    Scatter(Vec<(Partition, Value)>),
}

/// Where `request` for `endpoint` goes when the movements are spread over
/// `count` partitions.
fn route(count: u32, endpoint: QueryEndpoint, request: &Value) -> Route {
    let owner = |movement: &str| Partition::of(movement, count).expect("the partition count was checked at start");
    if count == 1 {
        return Route::One(Partition::WHOLE);
    }
    match endpoint {
        QueryEndpoint::Trends | QueryEndpoint::TrendTotals | QueryEndpoint::Cohorts | QueryEndpoint::Principles => {
            Route::One(owner(request["movement"].as_str().unwrap_or_default()))
        }
        QueryEndpoint::Compare => {
            let movements: Vec<&str> =
                request["movements"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            let mut partitions: Vec<Partition> = movements.iter().map(|movement| owner(movement)).collect();
            partitions.sort_by_key(|partition| partition.index());
            partitions.dedup();
            if let [only] = partitions[..] {
                return Route::One(only);
            }
            Route::Scatter(
                partitions
                    .into_iter()
                    .map(|partition| {
                        let mine: Vec<&str> =
                            movements.iter().copied().filter(|movement| partition.owns(movement)).collect();
                        let mut part = request.clone();
                        part["movements"] = serde_json::json!(mine);
                        (partition, part)
                    })
                    .collect(),
            )
        }
        QueryEndpoint::Movements | QueryEndpoint::Status => Route::Scatter(
            Partition::all(count)
                .expect("the partition count was checked at start")
                .into_iter()
                .map(|partition| (partition, request.clone()))
                .collect(),
        ),
    }
}

/// Sends a read to its partition(s); an error from any partition is the
/// answer, since a merge without one partition would be silently partial.
pub(crate) async fn ask(state: &AppState, endpoint: QueryEndpoint, request: Value) -> Result<Bytes, Failure> {
    match route(state.partitions, endpoint, &request) {
        Route::One(partition) => ask_partition(state, partition, endpoint, &request).await,
        Route::Scatter(parts) => {
            let answers =
                join_all(parts.iter().map(|(partition, request)| ask_partition(state, *partition, endpoint, request)))
                    .await;
            let answers = answers.into_iter().collect::<Result<Vec<Bytes>, Failure>>()?;
            merge(endpoint, &answers, &request).map_err(Failure::Unreadable)
        }
    }
}

/// Why a projector gave no usable answer.
pub(crate) enum Failure {
    /// The request could not be sent or was not answered.
    Unanswered(async_nats::RequestError),
    TimedOut,
    /// The projector answered with an error code and message.
    Refused {
        code: u16,
        message: String,
    },
    /// An answer was not the JSON it should be.
    Unreadable(serde_json::Error),
}

async fn ask_partition(
    state: &AppState,
    partition: Partition,
    endpoint: QueryEndpoint,
    request: &Value,
) -> Result<Bytes, Failure> {
    let payload = serde_json::to_vec(request).expect("a request always serialises");
    let asked = state.nats.request(partition.query_subject(endpoint), payload.into());
    let started = std::time::Instant::now();
    let answered = tokio::time::timeout(state.query_timeout, asked).await;
    let labels = momentum_runtime::metrics::RouteLabels { route: endpoint.name().to_owned() };
    state.metrics.projector_seconds.get_or_create(&labels).observe(started.elapsed().as_secs_f64());
    let reply = answered.map_err(|_| Failure::TimedOut)?.map_err(Failure::Unanswered)?;
    let refusal = reply.headers.as_ref().and_then(|headers| {
        let code = headers.get(async_nats::service::NATS_SERVICE_ERROR_CODE)?.as_str().parse::<u16>().ok()?;
        let message = headers.get(async_nats::service::NATS_SERVICE_ERROR).map(|value| value.as_str().to_owned());
        Some(Failure::Refused { code, message: message.unwrap_or_default() })
    });
    match refusal {
        None => Ok(reply.payload),
        Some(refusal) => Err(refusal),
    }
}

/// One answer made of several partitions' answers to the same read.
fn merge(endpoint: QueryEndpoint, answers: &[Bytes], request: &Value) -> Result<Bytes, serde_json::Error> {
    let merged = match endpoint {
        QueryEndpoint::Movements => {
            let mut lists = answers.iter().map(|answer| serde_json::from_slice::<MovementList>(answer));
            let mut merged = lists.next().transpose()?.unwrap_or(MovementList { watermark: 0, movements: Vec::new() });
            for list in lists {
                let list = list?;
                merged.watermark = merged.watermark.min(list.watermark);
                merged.movements.extend(list.movements);
            }
            merged.movements.sort_by(|left, right| left.movement.cmp(&right.movement));
            serde_json::to_vec(&merged)?
        }
        QueryEndpoint::Status => {
            let mut statuses = answers.iter().map(|answer| serde_json::from_slice::<Status>(answer));
            let mut merged = statuses.next().transpose()?.unwrap_or(Status { watermark: 0, applied_since_start: 0 });
            for status in statuses {
                let status = status?;
                merged.watermark = merged.watermark.min(status.watermark);
                merged.applied_since_start += status.applied_since_start;
            }
            serde_json::to_vec(&merged)?
        }
        QueryEndpoint::Compare => {
            let mut comparisons = answers.iter().map(|answer| serde_json::from_slice::<Comparison>(answer));
            let Some(merged) = comparisons.next().transpose()? else { return Ok(Bytes::new()) };
            let mut merged = merged;
            for comparison in comparisons {
                let comparison = comparison?;
                merged.watermark = merged.watermark.min(comparison.watermark);
                merged.series.extend(comparison.series);
            }
            // Each partition answers in its own order; the merged series
            // follow the order the request named the movements in.
            let asked: Vec<&str> =
                request["movements"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            merged.series.sort_by_key(|series| asked.iter().position(|movement| *movement == series.movement));
            serde_json::to_vec(&merged)?
        }
        // Reads of one movement are never scattered.
        QueryEndpoint::Trends | QueryEndpoint::TrendTotals | QueryEndpoint::Cohorts | QueryEndpoint::Principles => {
            return Ok(answers.first().cloned().unwrap_or_default());
        }
    };
    Ok(Bytes::from(merged))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
            let Route::One(partition) = route(2, QueryEndpoint::Trends, &json!({ "movement": movement })) else {
                panic!("a trend is read from one partition");
            };
            assert_eq!(partition.index(), index);
        }
        assert!(matches!(route(1, QueryEndpoint::Movements, &json!({})), Route::One(Partition::WHOLE)));
    }

    #[test]
    fn a_comparison_across_partitions_asks_each_for_its_own_movements() {
        let (first, second) = two_partitions_apart();
        let request = json!({ "movements": [second, first], "metric": "hours" });
        let Route::Scatter(parts) = route(2, QueryEndpoint::Compare, &request) else { panic!("two partitions") };
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].1["movements"], json!([first]));
        assert_eq!(parts[1].1["movements"], json!([second]));
        assert_eq!(parts[1].1["metric"], "hours");
    }

    #[test]
    fn merged_comparisons_keep_the_order_the_movements_were_asked_in() {
        let part = |movement: &str, watermark: u64| {
            Bytes::from(
                json!({
                    "metric": "volunteer_hours", "interval": "week", "from": "2026-03-02", "to": "2026-03-02",
                    "watermark": watermark, "volunteer_hour_value_gbp": 11.27,
                    "series": [{ "movement": movement, "values": [] }],
                })
                .to_string(),
            )
        };
        let answers = [part("a", 5), part("b", 4)];
        let merged = merge(QueryEndpoint::Compare, &answers, &json!({ "movements": ["b", "a"] })).unwrap();
        let merged: Comparison = serde_json::from_slice(&merged).unwrap();
        let order: Vec<&str> = merged.series.iter().map(|series| series.movement.as_str()).collect();
        assert_eq!(order, ["b", "a"]);
        assert_eq!(merged.watermark, 4);
    }

    #[test]
    fn merged_listings_are_in_id_order_with_the_lowest_watermark_and_summed_counts() {
        let answers = [
            Bytes::from(r#"{"watermark":9,"movements":[{"movement":"c","events":1},{"movement":"e","events":2}]}"#),
            Bytes::from(r#"{"watermark":7,"movements":[{"movement":"a","events":3}]}"#),
        ];
        let merged: MovementList =
            serde_json::from_slice(&merge(QueryEndpoint::Movements, &answers, &json!({})).unwrap()).unwrap();
        assert_eq!(merged.watermark, 7);
        let names: Vec<&str> = merged.movements.iter().map(|summary| summary.movement.as_str()).collect();
        assert_eq!(names, ["a", "c", "e"]);

        let statuses = [
            Bytes::from(r#"{"watermark":12,"applied_since_start":5}"#),
            Bytes::from(r#"{"watermark":10,"applied_since_start":4}"#),
        ];
        let merged: Status =
            serde_json::from_slice(&merge(QueryEndpoint::Status, &statuses, &json!({})).unwrap()).unwrap();
        assert_eq!(merged, Status { watermark: 10, applied_since_start: 9 });
    }

    #[test]
    fn an_answer_that_is_not_json_is_an_error_not_a_partial_merge() {
        let answers = [Bytes::from(r#"{"watermark":1,"movements":[]}"#), Bytes::from("not json")];
        assert!(merge(QueryEndpoint::Movements, &answers, &json!({})).is_err());
    }
}
