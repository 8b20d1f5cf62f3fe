//! Table tests of the seven criteria: gather and evaluate over hand-written Prometheus,
//! Alertmanager and admin_peers replies, hostile ones included (errors, non-JSON, timeouts).

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;

use super::config::{self, Config, Relay};
use super::gather::{Sources, ATTEMPTS};
use super::{dashboards, verify, Verdict};
use crate::sources::relay::{parse_admin_peers, PeerList};

const CLEARNET: &str = "gethrelay-clearnet-0";
const ONION: &str = "gethrelay-only-onion-0";
const NOW: f64 = 1_000_000.0;

fn config() -> Config {
    config::parse(&format!(
        "prometheus: http://127.0.0.1:9090\nalertmanager: http://127.0.0.1:9093\nrelays:\n  - {{namespace: gethrelay, pod: {CLEARNET}, mode: clearnet, admin: 'http://127.0.0.1:18546'}}\n  - {{namespace: gethrelay, pod: {ONION}, mode: only-onion, admin: 'http://127.0.0.1:18547'}}\n"
    ))
    .unwrap()
}

/// An admin_peers reply: `tor` peers dialed through the SOCKS proxy, `clearnet` inbound from
/// elsewhere; `salt` changes the ids (another set of peers with the same counts).
fn admin_reply(tor: usize, clearnet: usize, salt: usize) -> Result<String, String> {
    let entry = |index: usize, remote: &str, inbound: bool| {
        json!({"id": format!("{salt:02x}{index:062x}"), "enode": format!("enode://{index:0128x}@10.9.9.9:30303"),
               "network": {"localAddress": "10.0.0.1:30303", "remoteAddress": remote, "inbound": inbound}})
    };
    let mut entries: Vec<_> = (0..tor)
        .map(|i| entry(i, "127.0.0.1:9050", false))
        .collect();
    entries.extend((0..clearnet).map(|i| entry(tor + i, "10.1.2.3:40000", true)));
    Ok(json!({"jsonrpc": "2.0", "id": 1, "result": entries}).to_string())
}

/// The only-onion relay's three Tor peers and one clearnet address without `inbound`: clearnet
/// whichever way it was dialled, so both the exporter and verify count it as clearnet.
fn unclassified_on_onion() -> String {
    let mut reply: serde_json::Value =
        serde_json::from_str(&admin_reply(3, 1, 0).unwrap()).unwrap();
    reply["result"][3]["network"]
        .as_object_mut()
        .unwrap()
        .remove("inbound");
    reply.to_string()
}

fn vector(samples: &[(serde_json::Value, f64)]) -> String {
    let result: Vec<_> = samples
        .iter()
        .map(|(labels, value)| json!({"metric": labels, "value": [NOW, value.to_string()]}))
        .collect();
    json!({"status": "success", "data": {"resultType": "vector", "result": result}}).to_string()
}

fn labels(job: &str, pod: &str) -> serde_json::Value {
    json!({"job": job, "namespace": "gethrelay", "pod": pod})
}

/// A leak counter series: pod, instance, (time, value, process start; NaN for none).
type LeakSeries = (&'static str, &'static str, Vec<(f64, f64, f64)>);
/// Prometheus's (tor, clearnet, dashboard total) for one pod and attempt.
type PeerReading = (Option<f64>, Option<f64>, Option<f64>);
/// A case: its name, a change to the healthy fake, the expected outcome, words of the report.
type Case = (
    &'static str,
    Box<dyn Fn(&mut Fake)>,
    &'static str,
    Vec<&'static str>,
);

/// Canned sources; every field is one reply (or one per read, the last repeating).
struct Fake {
    /// When set, Prometheus answers every request with this body.
    broken: Option<String>,
    up: Vec<(&'static str, &'static str, f64)>,
    target_error: &'static str,
    rule_health: &'static str,
    missing_rule: Option<&'static str>,
    alerts: Vec<(&'static str, &'static str)>,
    alertmanager: Result<String, String>,
    admin: BTreeMap<&'static str, Vec<Result<String, String>>>,
    /// Per pod and attempt: (tor, clearnet, dashboard total); `None` is "no series".
    prometheus_peers: BTreeMap<&'static str, Vec<PeerReading>>,
    leak_samples: Vec<(f64, f64)>,
    /// More leak series, any pod.
    more_leaks: Vec<LeakSeries>,
    /// Prometheus's own sample-limit counter, for every job it scrapes (not only the relays).
    prometheus_sample_limit_hits: f64,
    /// Most samples per scrape of each relay target in the last hour.
    samples_per_scrape: f64,
    /// A rule group that is not the project's, with an unhealthy rule.
    foreign_rule_unhealthy: bool,
    /// Dashboard queries containing this return no data.
    empty: Option<&'static str>,
    reads: RefCell<BTreeMap<String, usize>>,
    asked: RefCell<BTreeMap<String, usize>>,
    sleeps: Cell<usize>,
}

fn healthy() -> Fake {
    Fake {
        broken: None,
        up: vec![
            ("gethrelay", CLEARNET, 1.0),
            ("relaywatch", CLEARNET, 1.0),
            ("gethrelay", ONION, 1.0),
            ("relaywatch", ONION, 1.0),
        ],
        target_error: "",
        rule_health: "ok",
        missing_rule: None,
        alerts: vec![("Watchdog", "")],
        alertmanager: Ok(json!({"config": {"original": "receivers:\n- name: \"null\"\n- name: slack\n- name: email\n"}}).to_string()),
        admin: BTreeMap::from([
            (CLEARNET, vec![admin_reply(1, 2, 0)]),
            (ONION, vec![admin_reply(3, 0, 0)]),
        ]),
        prometheus_peers: BTreeMap::from([
            (CLEARNET, vec![(Some(1.0), Some(2.0), Some(3.0))]),
            (ONION, vec![(Some(3.0), Some(0.0), Some(3.0))]),
        ]),
        leak_samples: vec![(NOW - 3590.0, 4.0), (NOW - 10.0, 4.0)],
        more_leaks: Vec::new(),
        prometheus_sample_limit_hits: 0.0,
        samples_per_scrape: 60.0,
        foreign_rule_unhealthy: false,
        empty: None,
        reads: RefCell::default(),
        asked: RefCell::default(),
        sleeps: Cell::new(0),
    }
}

impl Fake {
    fn peers(&self, pod: &str, which: usize) -> Option<f64> {
        let key = format!("{pod}/{which}");
        let mut asked = self.asked.borrow_mut();
        let count = asked.entry(key).or_default();
        let list = &self.prometheus_peers[pod];
        let reading = list[(*count).min(list.len() - 1)];
        *count += 1;
        [reading.0, reading.1, reading.2][which]
    }

    fn pod_in(expr: &str) -> Option<&'static str> {
        [CLEARNET, ONION].into_iter().find(|pod| {
            expr.contains(&format!("pod=\"{pod}\"")) || expr.contains(&format!("pod=~\"{pod}\""))
        })
    }
}

impl Sources for Fake {
    fn prometheus(&self, path: &str) -> Result<String, String> {
        if let Some(body) = &self.broken {
            return Ok(body.clone());
        }
        let reply =
            |data: serde_json::Value| Ok(json!({"status": "success", "data": data}).to_string());
        match path.split('?').next().unwrap() {
            "/api/v1/targets" => {
                let targets: Vec<_> = self.up.iter().map(|(job, pod, up)| json!({"labels": labels(job, pod), "health": if *up == 1.0 {"up"} else {"down"}, "lastError": self.target_error, "scrapeInterval": "15s"})).collect();
                reply(json!({"activeTargets": targets, "droppedTargets": []}))
            }
            "/api/v1/rules" => {
                let rules: Vec<_> = dashboards::alert_names().unwrap().into_iter()
                    .filter(|name| Some(name.as_str()) != self.missing_rule)
                    .map(|name| json!({"type": "alerting", "name": name, "health": self.rule_health, "lastError": ""}))
                    .collect();
                let mut groups: Vec<_> = dashboards::rule_groups()
                    .unwrap()
                    .into_iter()
                    .map(|name| json!({"name": name, "rules": []}))
                    .collect();
                groups[0]["rules"] = rules.into();
                if self.foreign_rule_unhealthy {
                    groups.push(json!({"name": "kubernetes-apps", "rules": [{"type": "alerting", "name": "KubePodCrashLooping", "health": "err", "lastError": "many-to-many matching not allowed"}]}));
                }
                reply(json!({"groups": groups}))
            }
            "/api/v1/alerts" => {
                let alerts: Vec<_> = self
                    .alerts
                    .iter()
                    .map(|(name, pod)| {
                        let mut labels = json!({"alertname": name});
                        if !pod.is_empty() {
                            labels["namespace"] = "gethrelay".into();
                            labels["pod"] = (*pod).into();
                        }
                        json!({"labels": labels, "state": "firing"})
                    })
                    .collect();
                reply(json!({"alerts": alerts}))
            }
            other => Err(format!("unexpected path {other}")),
        }
    }

    fn query(&self, expr: &str) -> Result<String, String> {
        if let Some(body) = &self.broken {
            return Ok(body.clone());
        }
        if expr == "time()" {
            // Prometheus's clock; this machine's (`now`) is 10 minutes ahead.
            return Ok(json!({"status": "success", "data": {"resultType": "scalar", "result": [NOW, NOW.to_string()]}}).to_string());
        }
        if expr.starts_with("up{") {
            let samples: Vec<_> = self
                .up
                .iter()
                .map(|(job, pod, up)| (labels(job, pod), *up))
                .collect();
            return Ok(vector(&samples));
        }
        if expr.contains("prometheus_target_scrapes_exceeded_sample_limit_total") {
            let hits = self.prometheus_sample_limit_hits;
            return Ok(vector(&[
                (json!({"job": "prometheus"}), 0.0),
                (json!({"job": "kube-state-metrics"}), hits),
            ]));
        }
        if expr.starts_with("max_over_time(scrape_samples_post_metric_relabeling") {
            let samples: Vec<_> = self
                .up
                .iter()
                .map(|(job, pod, _)| (labels(job, pod), self.samples_per_scrape))
                .collect();
            return Ok(vector(&samples));
        }
        if expr.starts_with("max_over_time(scrape_sample_limit") {
            return Ok(vector(&[]));
        }
        let leaks = expr.starts_with("relaywatch_clearnet_leaks_total");
        if leaks || expr.starts_with("process_start_time_seconds") {
            // The healthy series: one process, started long before the window.
            let mut all = vec![(
                ONION,
                "10.0.0.1:9476",
                self.leak_samples
                    .iter()
                    .map(|(t, v)| (*t, *v, 1.0))
                    .collect::<Vec<_>>(),
            )];
            all.extend(self.more_leaks.iter().cloned());
            let result: Vec<_> = all
                .into_iter()
                .filter(|series| !series.2.is_empty())
                .map(|(pod, instance, samples)| {
                    let mut metric = labels("relaywatch", pod);
                    metric["instance"] = instance.into();
                    metric["mode"] = "only-onion".into();
                    let values: Vec<_> = samples
                        .iter()
                        .filter(|s| leaks || !s.2.is_nan())
                        .map(|(t, v, start)| {
                            json!([t, (if leaks { v } else { start }).to_string()])
                        })
                        .collect();
                    json!({"metric": metric, "values": values})
                })
                .collect();
            return Ok(
                json!({"status": "success", "data": {"resultType": "matrix", "result": result}})
                    .to_string(),
            );
        }
        if let Some(pod) = Self::pod_in(expr) {
            let which = if expr.starts_with("sum(p2p_peers_tor") {
                0
            } else if expr.starts_with("sum(p2p_peers_clearnet") {
                1
            } else {
                2
            };
            return Ok(match self.peers(pod, which) {
                Some(value) => vector(&[(json!({"pod": pod}), value)]),
                None => vector(&[]),
            });
        }
        if self.empty.is_some_and(|needle| expr.contains(needle))
            || dashboards::metric_names(expr).is_ok_and(|names| dashboards::empty_allowed(&names))
        {
            return Ok(vector(&[]));
        }
        Ok(vector(&[(json!({"pod": CLEARNET}), 1.0)]))
    }

    fn query_at(&self, expr: &str, time: f64) -> Result<String, String> {
        if self.broken.is_none() {
            assert_eq!(
                time, NOW,
                "{expr}: a window is evaluated at Prometheus's time"
            );
        }
        self.query(expr)
    }

    fn alertmanager_status(&self) -> Result<String, String> {
        self.alertmanager.clone()
    }

    fn admin_peers(&self, relay: &Relay) -> Result<PeerList, String> {
        let replies = &self.admin[relay.pod.as_str()];
        let mut reads = self.reads.borrow_mut();
        let count = reads.entry(relay.pod.clone()).or_default();
        let reply = replies[(*count).min(replies.len() - 1)].clone();
        *count += 1;
        parse_admin_peers(reply?.as_bytes(), &|_| None).map_err(|error| error.summary())
    }

    fn now(&self) -> f64 {
        NOW + 600.0
    }

    fn sleep(&self, _: Duration) {
        self.sleeps.set(self.sleeps.get() + 1);
    }
}

/// `PASS`/`FAIL` per criterion, as a string like "PPFPPPP".
fn outcome(verdicts: &[Verdict]) -> String {
    verdicts
        .iter()
        .map(|verdict| if verdict.pass { 'P' } else { 'F' })
        .collect()
}

fn report(verdicts: &[Verdict]) -> String {
    verdicts
        .iter()
        .map(Verdict::render)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Each case: a change to the healthy fake, the expected outcome, and words the report must hold.
#[test]
fn criteria_table() {
    let timeout = || {
        Err("unreachable: cannot reach the relay's admin API at http://127.0.0.1:18547: timeout: global".to_string())
    };
    let cases: Vec<Case> = vec![
        ("healthy", Box::new(|_| {}), "PPPPPPP", vec!["PASS 1 targets up: 2 of 2", "2 of 2 relays match", "heartbeat, fine", "empty as allowed"]),
        ("exporter down explains its alert", Box::new(|fake| {
            fake.up[3].2 = 0.0;
            fake.alerts.push(("RelaywatchExporterDown", ONION));
            fake.prometheus_peers.insert(ONION, vec![(None, None, Some(3.0))]);
        }), "FPPFPFP", vec!["FAIL 1 targets up: 1 of 2", "gethrelay/gethrelay-only-onion-0: job=\"relaywatch\" target down (up 0)", "explained by a failed criterion"]),
        ("exporter missing", Box::new(|fake| { fake.up.remove(3); }), "FPPPPPP", vec!["gethrelay-only-onion-0: no job=\"relaywatch\" target"]),
        ("unexplained alert", Box::new(|fake| fake.alerts.push(("GethRelayNoTorPeers", CLEARNET))), "PPPPFPP", vec!["firing GethRelayNoTorPeers (gethrelay/gethrelay-clearnet-0): not explained"]),
        ("pod-less project alert", Box::new(|fake| fake.alerts.push(("GethRelayFleetBelowExpected", ""))), "PPPPFPP", vec!["GethRelayFleetBelowExpected (no pod): not explained"]),
        ("foreign alert", Box::new(|fake| fake.alerts.push(("KubeSchedulerDown", ""))), "PPPPPPP", vec!["KubeSchedulerDown (no pod): not a gethrelay alert"]),
        ("scrape error", Box::new(|fake| fake.target_error = "sample limit exceeded"), "PFPPPPP", vec!["last scrape over the sample limit: sample limit exceeded"]),
        ("unhealthy rules", Box::new(|fake| fake.rule_health = "err"), "PFPPPPP", vec!["health \"err\""]),
        ("project alert not loaded", Box::new(|fake| fake.missing_rule = Some("GethRelayClearnetLeak")), "PPPPFPP", vec!["project alerts not loaded: GethRelayClearnetLeak"]),
        ("no email receiver", Box::new(|fake| fake.alertmanager = Ok(json!({"config": {"original": "receivers:\n- name: slack\n"}}).to_string())), "PPPPFPP", vec!["lacks receivers email"]),
        ("alertmanager down", Box::new(|fake| fake.alertmanager = Err("cannot reach http://127.0.0.1:9093/api/v2/status: connection refused".into())), "PPPPFPP", vec!["Alertmanager unreachable", "connection refused"]),
        ("dashboard without data", Box::new(|fake| fake.empty = Some("tor_bootstrap_progress_ratio")), "PPFPPPP", vec!["no data, not allowed", "\"Tor bootstrap progress\""]),
        ("prometheus lags one attempt", Box::new(|fake| { fake.prometheus_peers.insert(CLEARNET, vec![(Some(0.0), Some(2.0), Some(2.0)), (Some(1.0), Some(2.0), Some(3.0))]); }), "PPPPPPP", vec!["tor 1 clearnet 2, admin_peers tor 1 clearnet 2 (0 unclassified) (attempt 2)"]),
        ("counts never match", Box::new(|fake| { fake.prometheus_peers.insert(CLEARNET, vec![(Some(1.0), Some(1.0), Some(2.0))]); }), "PPPFPPF", vec!["gethrelay-clearnet-0: no match in 5 attempts; last: Prometheus tor 1 clearnet 1, admin_peers tor 1 clearnet 2", "dashboard 2, len(admin_peers) 3"]),
        ("peers churn between reads", Box::new(|fake| { fake.admin.insert(CLEARNET, (0..20).map(|salt| admin_reply(1, 2, salt)).collect()); }), "PPPFPPF", vec!["admin_peers changed between the two reads"]),
        ("admin API times out", Box::new(move |fake| { fake.admin.insert(ONION, vec![timeout()]); }), "PPPFPFF", vec!["gethrelay/gethrelay-only-onion-0: no match in 5 attempts; last: admin_peers failed: unreachable", "gethrelay-only-onion-0: admin_peers could not be read"]),
        ("admin API not JSON", Box::new(|fake| { fake.admin.insert(ONION, vec![Ok("<html>".into())]); }), "PPPFPFF", vec!["not_json_rpc"]),
        ("clearnet peer on only-onion", Box::new(|fake| {
            fake.admin.insert(ONION, vec![admin_reply(3, 1, 0)]);
            fake.prometheus_peers.insert(ONION, vec![(Some(3.0), Some(1.0), Some(4.0))]);
        }), "PPPPPFP", vec!["Prometheus shows 1 clearnet peers", "admin_peers lists 1 clearnet peers"]),
        ("leak in the last hour", Box::new(|fake| fake.leak_samples = vec![(NOW - 3590.0, 4.0), (NOW - 10.0, 5.0)]), "PPPPPFP", vec!["1 clearnet leaks counted in the last hour"]),
        ("young leak series", Box::new(|fake| fake.leak_samples = vec![(NOW - 60.0, 0.0), (NOW - 10.0, 0.0)]), "PPPPPPP", vec!["leaks in 1h: 0"]),
        ("no leak series", Box::new(|fake| fake.leak_samples = vec![]), "PPPPPFP", vec!["no relaywatch_clearnet_leaks_total{mode=\"only-onion\"} series"]),
        // The old pod (10.0.0.1) leaked and was recreated (new IP, new series listed first).
        ("recreated pod leaked", Box::new(|fake| {
            fake.leak_samples = vec![];
            fake.more_leaks = vec![
                (ONION, "10.0.0.2:9476", vec![(NOW - 60.0, 0.0, NOW - 70.0), (NOW - 10.0, 0.0, NOW - 70.0)]),
                (ONION, "10.0.0.1:9476", vec![(NOW - 3590.0, 0.0, 1.0), (NOW - 600.0, 1.0, 1.0)]),
            ];
        }), "PPPPPFP", vec!["1 clearnet leaks counted in the last hour over 2 series"]),
        // The old process counted 1; the restarted one counted a leak before its first scrape.
        ("restart hides a leak behind an equal count", Box::new(|fake| {
            fake.leak_samples = vec![];
            fake.more_leaks = vec![(ONION, "10.0.0.1:9476", vec![(NOW - 3590.0, 1.0, 1.0), (NOW - 1800.0, 1.0, 1.0), (NOW - 10.0, 1.0, NOW - 20.0)])];
        }), "PPPPPFP", vec!["1 clearnet leaks counted in the last hour over 1 series"]),
        // A process started 15 s into the window and counted a leak before its first scrape;
        // judged by this machine's clock (10 minutes ahead) the series would look old.
        ("young process leaked before its first scrape", Box::new(|fake| {
            fake.leak_samples = vec![];
            fake.more_leaks = vec![(ONION, "10.0.0.1:9476", vec![(NOW - 3580.0, 1.0, NOW - 3585.0), (NOW - 10.0, 1.0, NOW - 3585.0)])];
        }), "PPPPPFP", vec!["1 clearnet leaks counted in the last hour over 1 series"]),
        ("no process start times", Box::new(|fake| {
            fake.leak_samples = vec![];
            fake.more_leaks = vec![(ONION, "10.0.0.1:9476", vec![(NOW - 3590.0, 1.0, f64::NAN), (NOW - 10.0, 1.0, f64::NAN)])];
        }), "PPPPPFP", vec!["an upper bound: 1 samples without a process_start_time_seconds"]),
        ("only-onion pod not listed", Box::new(|fake| {
            fake.more_leaks = vec![("gethrelay-only-onion-1", "10.0.0.3:9476", vec![(NOW - 3590.0, 0.0, 1.0), (NOW - 10.0, 0.0, 1.0)])];
        }), "PPPPPFP", vec!["gethrelay/gethrelay-only-onion-1: an only-onion pod in Prometheus that the configuration does not list"]),
        ("gone only-onion pod, not listed, leaked", Box::new(|fake| {
            fake.more_leaks = vec![("gethrelay-only-onion-1", "10.0.0.3:9476", vec![(NOW - 3590.0, 0.0, 1.0), (NOW - 1800.0, 1.0, 1.0)])];
        }), "PPPPPFP", vec!["gethrelay/gethrelay-only-onion-1: an only-onion pod gone from Prometheus (not listed), 1 clearnet leaks"]),
        ("gone only-onion pod, not listed, clean", Box::new(|fake| {
            fake.more_leaks = vec![("gethrelay-only-onion-1", "10.0.0.3:9476", vec![(NOW - 3590.0, 0.0, 1.0), (NOW - 1800.0, 0.0, 1.0)])];
        }), "PPPPPPP", vec!["gethrelay-only-onion-1: an only-onion pod gone from Prometheus, not listed, no leak in 1h, not judged"]),
        ("only-onion pod listed as clearnet", Box::new(|fake| {
            fake.more_leaks = vec![(CLEARNET, "10.0.0.4:9476", vec![(NOW - 3590.0, 0.0, 1.0), (NOW - 10.0, 0.0, 1.0)])];
        }), "PPPPPFP", vec!["gethrelay/gethrelay-clearnet-0: listed as clearnet but its relaywatch target has mode=\"only-onion\""]),
        ("peer without a direction on only-onion", Box::new(|fake| {
            fake.admin.insert(ONION, vec![Ok(unclassified_on_onion())]);
            fake.prometheus_peers.insert(ONION, vec![(Some(3.0), Some(1.0), Some(4.0))]);
        }), "PPPPPFP", vec!["admin_peers lists 1 clearnet peers", "Prometheus tor 3 clearnet 1, admin_peers tor 3 clearnet 1 (0 unclassified)"]),
        ("shared stack: other jobs over their limit, other rules unhealthy", Box::new(|fake| {
            fake.prometheus_sample_limit_hits = 3.0;
            fake.foreign_rule_unhealthy = true;
        }), "PPPPPPP", vec!["rule KubePodCrashLooping (group kubernetes-apps): health \"err\"", "not a project rule group, not judged", "16 of 16 rules of the project's groups healthy"]),
        ("relay over its sample limit in the last hour", Box::new(|fake| fake.samples_per_scrape = 2000.0), "PFPPPPP", vec!["up to 2000 samples per scrape in the last hour, at or over its sample limit 2000 (the deploy bundle's, assumed)"]),
        ("duplicate targets, one down", Box::new(|fake| fake.up.push(("gethrelay", CLEARNET, 0.0))), "FPPPPPP", vec!["gethrelay/gethrelay-clearnet-0: 1 of 2 job=\"gethrelay\" targets down", "gethrelay-clearnet-0: targets 2 gethrelay, 1 relaywatch"]),
        ("prometheus not JSON", Box::new(|fake| fake.broken = Some("<html>502 Bad Gateway</html>".into())), "FFFFFFF", vec!["not a Prometheus API reply (not JSON", "gethrelay-only-onion-0: no match in 1 attempt;", "65 queries failed: not a Prometheus API reply"]),
        ("prometheus errors", Box::new(|fake| fake.broken = Some(r#"{"status":"error","errorType":"timeout","error":"query timed out"}"#.into())), "FFFFFFF", vec!["timeout: query timed out"]),
    ];
    let config = config();
    for (name, change, want, words) in cases {
        let mut fake = healthy();
        change(&mut fake);
        let verdicts = verify(&config, &fake);
        let text = report(&verdicts);
        println!("== {name}\n{text}");
        assert_eq!(outcome(&verdicts), want, "{name}:\n{text}");
        for (verdict, number) in verdicts.iter().zip(1..) {
            assert!(
                verdict.line.starts_with(&format!(
                    "{} {number} ",
                    if verdict.pass { "PASS" } else { "FAIL" }
                )),
                "{name}: {}",
                verdict.line
            );
        }
        for word in words {
            assert!(text.contains(word), "{name}: no {word:?} in:\n{text}");
        }
        // Privacy: no peer id, enode or peer address in any line.
        for secret in ["enode://", "10.1.2.3", "10.9.9.9", "0000000000000000"] {
            assert!(!text.contains(secret), "{name}: {secret} printed:\n{text}");
        }
        let sleeps = fake.sleeps.get();
        assert!(sleeps < ATTEMPTS, "{name}: slept {sleeps} times");
        if want == "PPPPPPP" && name != "prometheus lags one attempt" {
            assert_eq!(sleeps, 0, "{name}: a healthy fleet needs no retry");
        }
    }
}
