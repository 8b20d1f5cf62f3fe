//! The relay's HTTP servers: admin JSON-RPC (`--admin`), the RPC proxy port, and pprof metrics.
//!
//! Request handling copies geth's node/rpcstack.go where an observer can tell the difference:
//! a Host header that is not an IP literal gets 403 (gethrelay sets no `--http.vhosts`), a POST
//! without `application/json` gets 415, and errors use geth's JSON-RPC codes and texts.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use serde_json::{json, Value};

use crate::identity::NodeRecord;
use crate::metrics;
use crate::node::Node;

/// Which API a JSON-RPC listener serves.
#[derive(Clone, Copy)]
enum Api {
    Admin,
    /// gethrelay's port 8545: every call goes to a public upstream, which the lab does not have.
    UpstreamProxy,
}

#[derive(Clone)]
struct RpcState {
    node: Arc<Node>,
    api: Api,
}

pub fn admin_router(node: Arc<Node>) -> Router {
    rpc_router(RpcState {
        node,
        api: Api::Admin,
    })
}

pub fn proxy_router(node: Arc<Node>) -> Router {
    rpc_router(RpcState {
        node,
        api: Api::UpstreamProxy,
    })
}

fn rpc_router(state: RpcState) -> Router {
    Router::new().route("/", any(rpc_http)).with_state(state)
}

pub fn pprof_router(node: Arc<Node>) -> Router {
    Router::new()
        .route("/debug/metrics/prometheus", get(prometheus))
        .route(
            "/debug/pprof/",
            get(|| async { "labrelay: pprof profiles are not reproduced\n" }),
        )
        .with_state(node)
}

async fn prometheus(State(node): State<Arc<Node>>) -> Response {
    let text = metrics::render(&node.meters, node.peer_gauges());
    ([(header::CONTENT_TYPE, "text/plain")], text).into_response()
}

fn host_is_ip_literal(host: &str) -> bool {
    let host = host.trim();
    let without_port = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    without_port.parse::<std::net::IpAddr>().is_ok()
}

async fn rpc_http(
    State(state): State<RpcState>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let host = headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    if !host_is_ip_literal(host) {
        return (StatusCode::FORBIDDEN, "invalid host specified\n").into_response();
    }
    if method == Method::GET && body.is_empty() {
        return StatusCode::OK.into_response();
    }
    if method != Method::POST {
        return (StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n").into_response();
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    if !content_type.starts_with("application/json") {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid content type, only application/json is supported\n",
        )
            .into_response();
    }
    let reply = match serde_json::from_slice::<Value>(&body) {
        Err(error) => error_reply(Value::Null, -32700, &format!("parse error: {error}")),
        Ok(Value::Array(batch)) if batch.is_empty() => {
            error_reply(Value::Null, -32600, "empty batch")
        }
        Ok(Value::Array(batch)) => {
            Value::Array(batch.iter().map(|call| handle_call(&state, call)).collect())
        }
        Ok(call) => handle_call(&state, &call),
    };
    axum::Json(reply).into_response()
}

fn error_reply(id: Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

fn handle_call(state: &RpcState, call: &Value) -> Value {
    let id = call.get("id").cloned().unwrap_or(Value::Null);
    let Some(method) = call.get("method").and_then(Value::as_str) else {
        return error_reply(id, -32600, "invalid request");
    };
    let params = call.get("params").cloned().unwrap_or(Value::Array(vec![]));
    let result = match state.api {
        Api::UpstreamProxy => Err((
            -32000,
            format!(
                "labrelay: {method} not served: this is the RPC proxy port, which gethrelay forwards to \
                 its public upstream (--rpc.upstream); the admin API is on --admin.port"
            ),
        )),
        Api::Admin => admin_call(&state.node, method, &params),
    };
    match result {
        Ok(value) => json!({"jsonrpc": "2.0", "id": id, "result": value}),
        Err((code, message)) => error_reply(id, code, &message),
    }
}

fn node_param(method: &str, params: &Value) -> Result<NodeRecord, (i64, String)> {
    let url = params.get(0).and_then(Value::as_str).ok_or_else(|| {
        (
            -32602,
            format!("missing value for required argument 0 of {method}"),
        )
    })?;
    NodeRecord::parse(url).map_err(|error| (-32000, format!("invalid enode: {error}")))
}

fn admin_call(node: &Arc<Node>, method: &str, params: &Value) -> Result<Value, (i64, String)> {
    match method {
        "admin_peers" => Ok(Value::Array(node.peers_info())),
        "admin_nodeInfo" => Ok(node_info(node)),
        "admin_addPeer" => {
            node.add_static(node_param(method, params)?);
            Ok(json!(true))
        }
        "admin_removePeer" => {
            node.remove_peer(node_param(method, params)?.id.node_id());
            Ok(json!(true))
        }
        "admin_addTrustedPeer" => {
            node.add_trusted(node_param(method, params)?.id.node_id());
            Ok(json!(true))
        }
        "admin_removeTrustedPeer" => {
            node.remove_trusted(node_param(method, params)?.id.node_id());
            Ok(json!(true))
        }
        "admin_datadir" => Ok(json!("")),
        // Outside gethrelay's API: exact per-connection byte counts for tests.
        "labrelay_setTraffic" => {
            let enabled = params.get(0).and_then(Value::as_bool).ok_or_else(|| {
                (
                    -32602,
                    "labrelay_setTraffic expects [true|false]".to_string(),
                )
            })?;
            node.set_traffic(enabled);
            Ok(json!(enabled))
        }
        "labrelay_connections" => {
            Ok(serde_json::to_value(node.connections()).unwrap_or(Value::Null))
        }
        other => Err((
            -32601,
            format!("the method {other} does not exist/is not available"),
        )),
    }
}

/// geth's NodeInfo; `head` is always zero in relay mode.
fn node_info(node: &Node) -> Value {
    let record = node.local_record();
    let config = node.config();
    let port = config.listen.port();
    json!({
        "id": hex::encode(record.id.node_id()),
        "name": config.name,
        "enode": record.url_v4(),
        "enr": record.enr.clone().unwrap_or_default(),
        "ip": record.ip.map(|ip| ip.to_string()).unwrap_or_else(|| "127.0.0.1".into()),
        "ports": {"discovery": port, "listener": port},
        "listenAddr": config.listen.to_string(),
        "protocols": {"eth": {
            "network": 1,
            "genesis": "0xd4e56740f876aef8c010b86a40d5f56745a118d0906a34e69aec8c0db1cb8fa3",
            "config": {"chainId": 1},
            "head": "0x0000000000000000000000000000000000000000000000000000000000000000",
        }},
    })
}

#[cfg(test)]
mod tests {
    use super::host_is_ip_literal;

    #[test]
    fn only_ip_hosts_pass_geth_vhost_check() {
        for host in ["127.0.0.1:8546", "127.0.0.1", "[::1]:8546", "10.1.2.3:1"] {
            assert!(host_is_ip_literal(host), "{host}");
        }
        for host in ["localhost:8546", "localhost", "", "relay.example:8546"] {
            assert!(!host_is_ip_literal(host), "{host}");
        }
    }
}
