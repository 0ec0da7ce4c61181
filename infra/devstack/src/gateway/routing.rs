//! Route matching as HttpApi does it: the most specific route wins (a
//! literal segment beats `{x}`, which beats `{x+}`), path parameters are
//! percent-decoded.

use crate::template::RouteDef;

/// The path and query of a request, split as API Gateway sees them.
pub(super) fn split_target(target: &str) -> (&str, &str) {
    match target.split_once('?') {
        Some((path, query)) => (path, query),
        None => (target, ""),
    }
}

/// Percent-decodes `s` (invalid escapes are kept literally, `+` stays `+`).
pub(super) fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// How well a route's segment matched: literal beats `{x}` beats `{x+}`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum SegmentMatch {
    Greedy,
    Param,
    Literal,
}

type PathParams = Vec<(String, String)>;

/// Matches `path` against a route path; returns the per-segment match kinds
/// (for choosing the most specific route) and the path parameters.
fn match_path(pattern: &str, path: &str) -> Option<(Vec<SegmentMatch>, PathParams)> {
    let pattern_segments: Vec<&str> = pattern.split('/').collect();
    let path_segments: Vec<&str> = path.split('/').collect();
    let mut kinds = Vec::with_capacity(pattern_segments.len());
    let mut params = Vec::new();
    for (i, segment) in pattern_segments.iter().enumerate() {
        if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            if let Some(greedy) = name.strip_suffix('+') {
                // `{proxy+}`: the rest of the path, at least one non-empty segment.
                if i + 1 != pattern_segments.len() || i >= path_segments.len() {
                    return None;
                }
                let rest = path_segments[i..].join("/");
                if rest.is_empty() {
                    return None;
                }
                kinds.push(SegmentMatch::Greedy);
                params.push((greedy.to_owned(), percent_decode(&rest)));
                return Some((kinds, params));
            }
            let value = path_segments.get(i).filter(|v| !v.is_empty())?;
            kinds.push(SegmentMatch::Param);
            params.push((name.to_owned(), percent_decode(value)));
        } else {
            if path_segments.get(i) != Some(segment) {
                return None;
            }
            kinds.push(SegmentMatch::Literal);
        }
    }
    if path_segments.len() != pattern_segments.len() {
        return None;
    }
    Some((kinds, params))
}

fn method_matches(route: &RouteDef, method: &str) -> bool {
    route.method.eq_ignore_ascii_case(method) || route.method.eq_ignore_ascii_case("ANY")
}

/// The route serving `method path`: segments match exactly, `{x}` matches one
/// non-empty segment (and `{x+}` the non-empty rest). Where several match, the
/// most specific wins (literal segments before parameters), then an exact
/// method before `ANY`, as in API Gateway.
pub fn match_route<'a>(routes: &'a [RouteDef], method: &str, path: &str) -> Option<&'a RouteDef> {
    routes
        .iter()
        .filter(|route| method_matches(route, method))
        .filter_map(|route| {
            let (kinds, _) = match_path(&route.path, path)?;
            let exact_method = route.method.eq_ignore_ascii_case(method);
            Some(((kinds, exact_method), route))
        })
        .max_by(|(a, _), (b, _)| a.cmp(b))
        .map(|(_, route)| route)
}

/// The `{name}` values of `raw_path` for `route` (empty when it does not match).
pub fn path_parameters(route: &RouteDef, raw_path: &str) -> Vec<(String, String)> {
    match_path(&route.path, raw_path)
        .map(|(_, params)| params)
        .unwrap_or_default()
}
