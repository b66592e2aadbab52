//! In-narration documents: `[DOCUMENT:template:"Title"] body [/DOCUMENT]`.

use serde::Serialize;

use super::patterns::DOCUMENT_BLOCK;
use super::text::py_strip;

/// A document the narrator handed the players (a notice, a letter…).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DocumentEvent {
    pub genre: String,
    pub template_name: String,
    pub title: String,
    pub body_text: String,
    pub extra_metadata: serde_json::Map<String, serde_json::Value>,
    pub source_agent: Option<String>,
}

/// Returns the documents found and the text with every document removed
/// (trimmed; inner double spaces remain).
pub fn extract_documents(text: &str, genre: &str) -> (Vec<DocumentEvent>, String) {
    if !text.contains("[DOCUMENT:") {
        return (Vec::new(), text.to_owned());
    }
    let docs: Vec<DocumentEvent> = DOCUMENT_BLOCK
        .captures_iter(text)
        .map(|c| DocumentEvent {
            genre: genre.to_owned(),
            template_name: c[1].to_owned(),
            title: c[2].to_owned(),
            body_text: py_strip(&c[3]).to_owned(),
            extra_metadata: Default::default(),
            source_agent: None,
        })
        .collect();
    if docs.is_empty() {
        return (docs, text.to_owned());
    }
    let stripped = DOCUMENT_BLOCK.replace_all(text, "");
    (docs, py_strip(&stripped).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acceptance_12() {
        let (docs, rest) =
            extract_documents("[DOCUMENT:notice:\"Wanted\"]Reward: 50 caps[/DOCUMENT] The square is empty.", "ashfall");
        assert_eq!(rest, "The square is empty.");
        assert_eq!(docs.len(), 1);
        assert_eq!(docs[0].template_name, "notice");
        assert_eq!(docs[0].title, "Wanted");
        assert_eq!(docs[0].body_text, "Reward: 50 caps");
        assert_eq!(docs[0].genre, "ashfall");
        assert_eq!(
            serde_json::to_value(&docs[0]).unwrap(),
            serde_json::json!({"genre":"ashfall","template_name":"notice","title":"Wanted","body_text":"Reward: 50 caps","extra_metadata":{},"source_agent":null})
        );
    }

    #[test]
    fn multiline_bodies_and_inner_spaces() {
        let text = "Before  [DOCUMENT:letter:\"To Mara\"]\n  Dear Mara,\n  come home.\n[/DOCUMENT]  after  it";
        let (docs, rest) = extract_documents(text, "g");
        assert_eq!(docs[0].body_text, "Dear Mara,\n  come home.");
        assert_eq!(rest, "Before    after  it");
        let (none, same) = extract_documents("[DOCUMENT:x:\"\"]no title[/DOCUMENT]", "g");
        assert!(none.is_empty());
        assert_eq!(same, "[DOCUMENT:x:\"\"]no title[/DOCUMENT]");
    }
}
