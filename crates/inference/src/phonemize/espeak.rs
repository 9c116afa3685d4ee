//! espeak-ng 1.52 (built from source by espeak-rs-sys) as a text-to-IPA engine. Clause by
//! clause, with the clause's terminator, as Piper's phonemizer reads it.
//!
//! Data path: `SMAI_ESPEAK_DATA` (the folder that holds `espeak-ng-data`, or that folder itself)
//! when set; otherwise espeak-ng's own search (`ESPEAK_DATA_PATH`, then the data installed into
//! the build's output folder when espeak-rs-sys compiled it).

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::sync::{Mutex, OnceLock};

use espeak_rs_sys as sys;

use super::PhonemizeError;

// espeak-ng's build finds Debian's libsonic (libsonic-dev) instead of fetching it, and
// espeak-rs-sys does not link it; its wave generator needs it.
#[link(name = "sonic")]
extern "C" {}

// Internals of libespeak-ng 1.52 used by Piper's own bridge: the public `espeak_TextToPhonemes`
// drops the clause terminator, which Piper keeps as punctuation.
extern "C" {
    static mut translator: *mut c_void;
    static mut p_decoder: *mut sys::espeak_ng_TEXT_DECODER;
    fn TranslateClauseWithTerminator(
        tr: *mut c_void,
        tone_out: *mut c_int,
        voice_change: *mut *mut c_char,
        terminator_out: *mut c_int,
    );
    fn GetTranslatedPhonemeString(phoneme_mode: c_int) -> *const c_char;
}

const PHONEMES_IPA: c_int = 0x02;
const CLAUSE_TYPE_SENTENCE: c_int = 0x0008_0000;
const CLAUSE_PERIOD: c_int = 40 | 0x0008_0000;
const CLAUSE_QUESTION: c_int = 40 | 0x2000 | 0x0008_0000;
const CLAUSE_EXCLAMATION: c_int = 45 | 0x3000 | 0x0008_0000;
const CLAUSE_COMMA: c_int = 20 | 0x1000 | 0x0004_0000;
const CLAUSE_COLON: c_int = 30 | 0x0004_0000;
const CLAUSE_SEMICOLON: c_int = 30 | 0x1000 | 0x0004_0000;

/// One clause of phonemes as espeak-ng read it.
#[derive(Debug, Clone, PartialEq)]
pub struct Clause {
    pub phonemes: String,
    /// "." "?" "!" "," ":" ";" or "" when the clause ended without punctuation.
    pub terminator: &'static str,
    pub end_of_sentence: bool,
}

/// espeak-ng keeps global state; every call goes through this lock.
static ESPEAK: OnceLock<Result<Mutex<()>, String>> = OnceLock::new();

fn engine() -> Result<&'static Mutex<()>, PhonemizeError> {
    let state = ESPEAK.get_or_init(|| {
        let data = std::env::var("SMAI_ESPEAK_DATA").ok().map(|dir| {
            // espeak-ng wants the folder that contains `espeak-ng-data`.
            let path = std::path::PathBuf::from(dir);
            if path.file_name().is_some_and(|n| n == "espeak-ng-data") {
                path.parent().map(|p| p.to_path_buf()).unwrap_or(path)
            } else {
                path
            }
        });
        let data_c = data.as_ref().and_then(|p| CString::new(p.to_string_lossy().as_bytes()).ok());
        let data_ptr = data_c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr());
        // SAFETY: called once, before any other espeak call, with a valid C string or null.
        let rate = unsafe {
            sys::espeak_Initialize(
                sys::espeak_AUDIO_OUTPUT_AUDIO_OUTPUT_SYNCHRONOUS,
                0,
                data_ptr,
                0x8000, // espeakINITIALIZE_DONT_EXIT
            )
        };
        if rate <= 0 {
            return Err(format!(
                "espeak-ng could not load its data (phondata, dictionaries) from {}; set SMAI_ESPEAK_DATA \
                 to the folder holding espeak-ng-data",
                data.map(|p| p.display().to_string()).unwrap_or_else(|| "its default paths".into())
            ));
        }
        Ok(Mutex::new(()))
    });
    state.as_ref().map_err(|e| PhonemizeError::Espeak(e.clone()))
}

/// Text to IPA phonemes, clause by clause, with espeak-ng voice `voice` (e.g. "en-us").
pub fn text_to_clauses(voice: &str, text: &str) -> Result<Vec<Clause>, PhonemizeError> {
    let lock = engine()?;
    let _guard = lock.lock().unwrap_or_else(|e| e.into_inner());
    let voice_c = CString::new(voice).map_err(|_| PhonemizeError::Voice(voice.to_string()))?;
    // Interior NULs would end the text early in C; espeak reads them as spaces anyway.
    let text_c = CString::new(text.replace('\0', " ")).expect("NULs were replaced");
    let mut clauses = Vec::new();
    // SAFETY: espeak is initialised and serialised by the lock; pointers outlive the calls.
    unsafe {
        if sys::espeak_SetVoiceByName(voice_c.as_ptr()) != sys::espeak_ERROR_EE_OK {
            return Err(PhonemizeError::Voice(voice.to_string()));
        }
        if p_decoder.is_null() {
            p_decoder = sys::create_text_decoder();
        }
        let mut cursor: *const c_void = text_c.as_ptr() as *const c_void;
        while !cursor.is_null() {
            let status = sys::text_decoder_decode_string_multibyte(
                p_decoder,
                cursor,
                sys::espeak_ng_ENCODING_ESPEAKNG_ENCODING_UTF_8,
                0, // espeakCHARS_AUTO
            );
            if status != sys::espeak_ng_STATUS_ENS_OK {
                return Err(PhonemizeError::Espeak(format!("text decoder failed ({status})")));
            }
            let mut terminator: c_int = 0;
            TranslateClauseWithTerminator(translator, std::ptr::null_mut(), std::ptr::null_mut(), &mut terminator);
            cursor = sys::text_decoder_get_buffer(p_decoder);
            let phonemes = GetTranslatedPhonemeString(PHONEMES_IPA);
            let phonemes = if phonemes.is_null() {
                String::new()
            } else {
                CStr::from_ptr(phonemes).to_string_lossy().into_owned()
            };
            let kind = terminator & 0x000F_FFFF;
            let terminator_str = match kind {
                CLAUSE_PERIOD => ".",
                CLAUSE_QUESTION => "?",
                CLAUSE_EXCLAMATION => "!",
                CLAUSE_COMMA => ",",
                CLAUSE_COLON => ":",
                CLAUSE_SEMICOLON => ";",
                _ => "",
            };
            clauses.push(Clause {
                phonemes,
                terminator: terminator_str,
                end_of_sentence: kind & CLAUSE_TYPE_SENTENCE == CLAUSE_TYPE_SENTENCE,
            });
        }
    }
    Ok(clauses)
}
