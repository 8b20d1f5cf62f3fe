//! The closed word lists of control-spec.txt as enums that keep unknown words.
//!
//! Tor may add values to any list at any time (spec §1.1: "clients MUST tolerate unexpected
//! values"), so every enum has an `Other(String)` variant holding the word verbatim, and a
//! `label()` that maps it into a fixed, lower-case set ending in `"other"`: the bounded
//! label values a metric may carry.

/// Declares one vocabulary: `Variant = "TOR_WORD" / "label",` per known value.
macro_rules! vocabulary {
    (
        $(#[$meta:meta])*
        $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $tor:literal / $label:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )*
            /// A word this crate does not know, kept verbatim.
            Other(String),
        }

        impl $name {
            /// Every label value `label()` can return, `"other"` last.
            pub const LABELS: &'static [&'static str] = &[$($label,)* "other"];

            /// Maps tor's word; unknown words become `Other` (never an error).
            pub fn parse(word: &str) -> Self {
                match word {
                    $( $tor => Self::$variant, )*
                    other => Self::Other(other.to_string()),
                }
            }

            /// Tor's spelling (the verbatim word for `Other`).
            pub fn as_str(&self) -> &str {
                match self {
                    $( Self::$variant => $tor, )*
                    Self::Other(word) => word,
                }
            }

            /// A bounded, lower-case label value; `"other"` for unknown words.
            pub fn label(&self) -> &'static str {
                match self {
                    $( Self::$variant => $label, )*
                    Self::Other(_) => "other",
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

vocabulary! {
    /// STREAM status (§4.1.2).
    StreamStatus {
        New = "NEW" / "new",
        NewResolve = "NEWRESOLVE" / "newresolve",
        Remap = "REMAP" / "remap",
        SentConnect = "SENTCONNECT" / "sentconnect",
        SentResolve = "SENTRESOLVE" / "sentresolve",
        Succeeded = "SUCCEEDED" / "succeeded",
        Failed = "FAILED" / "failed",
        Closed = "CLOSED" / "closed",
        Detached = "DETACHED" / "detached",
        ControllerWait = "CONTROLLER_WAIT" / "controller_wait",
        XoffSent = "XOFF_SENT" / "xoff_sent",
        XoffRecv = "XOFF_RECV" / "xoff_recv",
        XonSent = "XON_SENT" / "xon_sent",
        XonRecv = "XON_RECV" / "xon_recv",
    }
}

vocabulary! {
    /// STREAM REASON / REMOTE_REASON (§4.1.2 and tor-spec's RELAY_END reasons).
    StreamReason {
        Misc = "MISC" / "misc",
        ResolveFailed = "RESOLVEFAILED" / "resolvefailed",
        ConnectRefused = "CONNECTREFUSED" / "connectrefused",
        ExitPolicy = "EXITPOLICY" / "exitpolicy",
        Destroy = "DESTROY" / "destroy",
        Done = "DONE" / "done",
        Timeout = "TIMEOUT" / "timeout",
        NoRoute = "NOROUTE" / "noroute",
        Hibernating = "HIBERNATING" / "hibernating",
        Internal = "INTERNAL" / "internal",
        ResourceLimit = "RESOURCELIMIT" / "resourcelimit",
        ConnReset = "CONNRESET" / "connreset",
        TorProtocol = "TORPROTOCOL" / "torprotocol",
        NotDirectory = "NOTDIRECTORY" / "notdirectory",
        End = "END" / "end",
        PrivateAddr = "PRIVATE_ADDR" / "private_addr",
    }
}

vocabulary! {
    /// STREAM PURPOSE (§4.1.2); the relay's dials are `USER`.
    StreamPurpose {
        DirFetch = "DIR_FETCH" / "dir_fetch",
        DirUpload = "DIR_UPLOAD" / "dir_upload",
        DnsRequest = "DNS_REQUEST" / "dns_request",
        User = "USER" / "user",
        DirportTest = "DIRPORT_TEST" / "dirport_test",
    }
}

vocabulary! {
    /// CIRC status (§4.1.1).
    CircStatus {
        Launched = "LAUNCHED" / "launched",
        Built = "BUILT" / "built",
        GuardWait = "GUARD_WAIT" / "guard_wait",
        Extended = "EXTENDED" / "extended",
        Failed = "FAILED" / "failed",
        Closed = "CLOSED" / "closed",
    }
}

vocabulary! {
    /// CIRC PURPOSE (§4.1.1), plus purposes real tor emits beyond the spec's list
    /// (`HS_CLIENT_HSDIR`, `HS_SERVICE_HSDIR`, `CONFLUX_*`).
    CircPurpose {
        General = "GENERAL" / "general",
        HsClientHsdir = "HS_CLIENT_HSDIR" / "hs_client_hsdir",
        HsClientIntro = "HS_CLIENT_INTRO" / "hs_client_intro",
        HsClientRend = "HS_CLIENT_REND" / "hs_client_rend",
        HsServiceHsdir = "HS_SERVICE_HSDIR" / "hs_service_hsdir",
        HsServiceIntro = "HS_SERVICE_INTRO" / "hs_service_intro",
        HsServiceRend = "HS_SERVICE_REND" / "hs_service_rend",
        Testing = "TESTING" / "testing",
        Controller = "CONTROLLER" / "controller",
        MeasureTimeout = "MEASURE_TIMEOUT" / "measure_timeout",
        HsVanguards = "HS_VANGUARDS" / "hs_vanguards",
        PathBiasTesting = "PATH_BIAS_TESTING" / "path_bias_testing",
        CircuitPadding = "CIRCUIT_PADDING" / "circuit_padding",
        ConfluxLinked = "CONFLUX_LINKED" / "conflux_linked",
        ConfluxUnlinked = "CONFLUX_UNLINKED" / "conflux_unlinked",
    }
}

vocabulary! {
    /// CIRC REASON / REMOTE_REASON (§4.1.1), plus `CHANNEL_CLOSED` and `IP_NOW_REDUNDANT`
    /// which real tor emits.
    CircReason {
        None = "NONE" / "none",
        TorProtocol = "TORPROTOCOL" / "torprotocol",
        Internal = "INTERNAL" / "internal",
        Requested = "REQUESTED" / "requested",
        Hibernating = "HIBERNATING" / "hibernating",
        ResourceLimit = "RESOURCELIMIT" / "resourcelimit",
        ConnectFailed = "CONNECTFAILED" / "connectfailed",
        OrIdentity = "OR_IDENTITY" / "or_identity",
        OrConnClosed = "OR_CONN_CLOSED" / "or_conn_closed",
        ChannelClosed = "CHANNEL_CLOSED" / "channel_closed",
        Timeout = "TIMEOUT" / "timeout",
        Finished = "FINISHED" / "finished",
        Destroyed = "DESTROYED" / "destroyed",
        NoPath = "NOPATH" / "nopath",
        NoSuchService = "NOSUCHSERVICE" / "nosuchservice",
        MeasurementExpired = "MEASUREMENT_EXPIRED" / "measurement_expired",
        IpNowRedundant = "IP_NOW_REDUNDANT" / "ip_now_redundant",
    }
}

vocabulary! {
    /// HS_DESC action (§4.1.25).
    HsDescAction {
        Requested = "REQUESTED" / "requested",
        Upload = "UPLOAD" / "upload",
        Received = "RECEIVED" / "received",
        Uploaded = "UPLOADED" / "uploaded",
        Ignore = "IGNORE" / "ignore",
        Failed = "FAILED" / "failed",
        Created = "CREATED" / "created",
    }
}

vocabulary! {
    /// HS_DESC REASON (§4.1.25).
    HsDescReason {
        BadDesc = "BAD_DESC" / "bad_desc",
        QueryRejected = "QUERY_REJECTED" / "query_rejected",
        UploadRejected = "UPLOAD_REJECTED" / "upload_rejected",
        NotFound = "NOT_FOUND" / "not_found",
        Unexpected = "UNEXPECTED" / "unexpected",
        QueryNoHsdir = "QUERY_NO_HSDIR" / "query_no_hsdir",
        QueryRateLimited = "QUERY_RATE_LIMITED" / "query_rate_limited",
    }
}

vocabulary! {
    /// ORCONN status (§4.1.3).
    OrConnStatus {
        New = "NEW" / "new",
        Launched = "LAUNCHED" / "launched",
        Connected = "CONNECTED" / "connected",
        Failed = "FAILED" / "failed",
        Closed = "CLOSED" / "closed",
    }
}

vocabulary! {
    /// ORCONN REASON (§4.1.3).
    OrConnReason {
        Misc = "MISC" / "misc",
        Done = "DONE" / "done",
        ConnectRefused = "CONNECTREFUSED" / "connectrefused",
        Identity = "IDENTITY" / "identity",
        ConnectReset = "CONNECTRESET" / "connectreset",
        Timeout = "TIMEOUT" / "timeout",
        NoRoute = "NOROUTE" / "noroute",
        IoError = "IOERROR" / "ioerror",
        ResourceLimit = "RESOURCELIMIT" / "resourcelimit",
        PtMissing = "PT_MISSING" / "pt_missing",
    }
}

vocabulary! {
    /// NETWORK_LIVENESS status (§4.1.27).
    Liveness {
        Up = "UP" / "up",
        Down = "DOWN" / "down",
    }
}

vocabulary! {
    /// The event family of a status event (§4.1.10).
    StatusKind {
        General = "STATUS_GENERAL" / "general",
        Client = "STATUS_CLIENT" / "client",
        Server = "STATUS_SERVER" / "server",
    }
}

vocabulary! {
    /// A status event's severity (§4.1.10).
    Severity {
        Notice = "NOTICE" / "notice",
        Warn = "WARN" / "warn",
        Err = "ERR" / "err",
    }
}

vocabulary! {
    /// An authentication method PROTOCOLINFO offers (§3.21).
    AuthMethod {
        Null = "NULL" / "null",
        HashedPassword = "HASHEDPASSWORD" / "hashedpassword",
        Cookie = "COOKIE" / "cookie",
        SafeCookie = "SAFECOOKIE" / "safecookie",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_and_unknown_words() {
        assert_eq!(
            StreamReason::parse("RESOLVEFAILED"),
            StreamReason::ResolveFailed
        );
        assert_eq!(
            StreamReason::parse("RESOLVEFAILED").label(),
            "resolvefailed"
        );
        let unknown = CircPurpose::parse("HS_NEW_THING");
        assert_eq!(unknown, CircPurpose::Other("HS_NEW_THING".into()));
        assert_eq!(unknown.as_str(), "HS_NEW_THING");
        assert_eq!(unknown.label(), "other");
        assert_eq!(CircPurpose::LABELS.last(), Some(&"other"));
        // Words are case-sensitive, as tor writes them.
        assert_eq!(Liveness::parse("up").label(), "other");
    }

    #[test]
    fn labels_are_lower_case_and_unique() {
        for labels in [
            StreamReason::LABELS,
            CircPurpose::LABELS,
            CircReason::LABELS,
            OrConnReason::LABELS,
            HsDescReason::LABELS,
        ] {
            let mut seen = std::collections::BTreeSet::new();
            for label in labels {
                assert_eq!(*label, label.to_ascii_lowercase());
                assert!(seen.insert(*label), "duplicate label {label}");
            }
        }
    }
}
