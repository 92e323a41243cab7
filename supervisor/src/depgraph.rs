//! `g3proxy -c FILE -g [graphviz|mermaid|plantuml]`: the modules of a config and what each
//! refers to (server → escaper, user group, auditor, server; escaper → escaper, resolver;
//! resolver → resolver), printed for the tool the operator names. One model, three ways to
//! write it.

use std::fmt::Write;

use g3proxy_shared::config::Config;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GraphFormat {
    Graphviz,
    Mermaid,
    Plantuml,
}

/// A module: its section and name.
type Node<'a> = (&'static str, &'a str);

struct Graph<'a> {
    nodes: Vec<Node<'a>>,
    edges: Vec<(Node<'a>, Node<'a>)>,
}

fn model(config: &Config) -> Graph<'_> {
    let mut nodes: Vec<Node> = Vec::new();
    let mut edges = Vec::new();
    for resolver in &config.resolvers {
        let from = ("resolver", resolver.name());
        nodes.push(from);
        for (_, next) in resolver.next_resolvers() {
            edges.push((from, ("resolver", next)));
        }
    }
    for escaper in &config.escapers {
        let from = ("escaper", escaper.name());
        nodes.push(from);
        if let Some(resolver) = escaper.resolver() {
            edges.push((from, ("resolver", resolver)));
        }
        for next in escaper.next_escapers() {
            edges.push((from, ("escaper", next)));
        }
    }
    nodes.extend(config.user_groups.iter().map(|g| ("user_group", g.name())));
    nodes.extend(config.auditors.iter().map(|a| ("auditor", a.as_str())));
    for server in &config.servers {
        let from = ("server", server.name());
        nodes.push(from);
        if let Some(escaper) = server.escaper() {
            edges.push((from, ("escaper", escaper)));
        }
        for next in server.next_servers() {
            edges.push((from, ("server", next)));
        }
        if let Some(group) = server.user_group() {
            edges.push((from, ("user_group", group)));
        }
        if let Some(auditor) = server.auditor() {
            edges.push((from, ("auditor", auditor)));
        }
    }
    // A reference to a missing module still shows, as the loader's warning says it.
    for (_, to) in &edges {
        if !nodes.contains(to) {
            nodes.push(*to);
        }
    }
    Graph { nodes, edges }
}

/// An identifier every format takes: the section, then the name with anything but letters,
/// digits and `_` spelt out as its code (names may hold `-` or `.`).
fn id((section, name): Node) -> String {
    let mut id = format!("{section}_");
    for c in name.chars() {
        match c.is_ascii_alphanumeric() || c == '_' {
            true => id.push(c),
            false => {
                let _ = write!(id, "_{:x}_", c as u32);
            }
        }
    }
    id
}

pub fn render(config: &Config, format: GraphFormat) -> String {
    let graph = model(config);
    let mut out = String::new();
    let sections = ["server", "escaper", "resolver", "user_group", "auditor"]
        .into_iter()
        .filter(|section| graph.nodes.iter().any(|n| n.0 == *section));
    match format {
        GraphFormat::Graphviz => {
            out.push_str("digraph g3proxy {\n  rankdir=LR;\n");
            for section in sections.clone() {
                let _ = writeln!(
                    out,
                    "  subgraph cluster_{section} {{\n    label=\"{section}\";"
                );
                for node in graph.nodes.iter().filter(|n| n.0 == section) {
                    let _ = writeln!(out, "    {} [label={:?}];", id(*node), node.1);
                }
                out.push_str("  }\n");
            }
            for (from, to) in &graph.edges {
                let _ = writeln!(out, "  {} -> {};", id(*from), id(*to));
            }
            out.push_str("}\n");
        }
        GraphFormat::Mermaid => {
            out.push_str("flowchart LR\n");
            for section in sections.clone() {
                let _ = writeln!(out, "  subgraph {section}");
                for node in graph.nodes.iter().filter(|n| n.0 == section) {
                    let _ = writeln!(
                        out,
                        "    {}[\"{}\"]",
                        id(*node),
                        node.1.replace('"', "#quot;")
                    );
                }
                out.push_str("  end\n");
            }
            for (from, to) in &graph.edges {
                let _ = writeln!(out, "  {} --> {}", id(*from), id(*to));
            }
        }
        GraphFormat::Plantuml => {
            out.push_str("@startuml\nleft to right direction\n");
            for section in sections.clone() {
                let _ = writeln!(out, "package {section} {{");
                for node in graph.nodes.iter().filter(|n| n.0 == section) {
                    let _ = writeln!(out, "  component {:?} as {}", node.1, id(*node));
                }
                out.push_str("}\n");
            }
            for (from, to) in &graph.edges {
                let _ = writeln!(out, "{} --> {}", id(*from), id(*to));
            }
            out.push_str("@enduml\n");
        }
    }
    out
}
