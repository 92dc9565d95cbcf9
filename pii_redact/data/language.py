"""A crude language guess for records that do not name their language, enough to report how the
languages of a data set are covered (prepare_data.py's report)."""
from __future__ import annotations

import re
from collections import Counter

_STOPWORDS = {
    "en": "the and of to is in that it for you with on are this be was your at have please our will from by"
          " dear regards hello thanks name surname address street city phone birth password username",
    "de": "der die das und ist nicht ein eine ich sie mit auf für den dem des zu sich auch wir ihr ihre bitte wird sind von bei"
          " hallo grüße geehrte freundlichen vorname nachname anschrift straße strasse ort telefon geburtsdatum kennwort"
          " passwort benutzername hausnummer kontonummer kreditkarte",
    "fr": "le la les et est une des du pour pas que qui dans sur nous vous avec votre au aux ce cette sont merci"
          " bonjour cordialement madame monsieur prénom nom adresse rue ville téléphone naissance passe utilisateur",
    "it": "il lo gli della delle che è per non una con sono di da nel alla questo questa si grazie vostro"
          " buongiorno saluti gentile cordiali cognome indirizzo città telefono nascita codice utente",
    "es": "el los las del que es y por con para se su sus al está este esta gracias usted nuestro"
          " hola saludos estimado estimada apellido apellidos dirección calle ciudad teléfono nacimiento"
          " contraseña usuario",
    # not "de" or "en": as frequent in French and Spanish, they would pull those texts to Dutch
    "nl": "het een van niet dat op te met voor zijn ook je uw wij bij naar dit deze worden wordt kan"
          " hallo groeten geachte beste naam voornaam achternaam adres straat woonplaats telefoon geboortedatum"
          " wachtwoord gebruikersnaam huisnummer rekeningnummer",
}
# word -> the languages it is a function word of (some, like "que" or "con", serve several)
_LANGUAGES_OF: dict[str, list[str]] = {}
for _lang, _words in _STOPWORDS.items():
    for _word in _words.split():
        _LANGUAGES_OF.setdefault(_word, []).append(_lang)
_WORD_RE = re.compile(r"[^\W\d_]+")


def guess_language(text: str) -> str:
    """The language whose frequent function words (and the words forms and letters use: greetings,
    field names) occur most often; "unknown" if none do. Crude, but enough to report coverage
    for data that does not name its language.
    """
    scores: Counter = Counter()
    for word in _WORD_RE.findall(text):
        scores.update(_LANGUAGES_OF.get(word.lower(), ()))
    return scores.most_common(1)[0][0] if scores else "unknown"
