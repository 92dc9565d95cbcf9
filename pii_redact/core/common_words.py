"""Words of the six languages that are not names on their own: function words, greetings and
titles, and the names of months and weekdays.

A model sometimes masks one of these by mistake (`the` as a given name), or a person's name is
one of them (`May`, `Will`, `Juni`). Either way the word says nothing about a person when found
alone elsewhere in the text, and looking for it would mask every `the` or every month: so
propagation (`inference.propagate`) never looks for them on their own. Lower case, compared
case-insensitively. Written out rather than taken from a locale or Faker's tables so that a
library upgrade never changes what a redaction masks.
"""
from __future__ import annotations

_FUNCTION_WORDS = {
    "en": "the and for but not nor you your yours she her hers his him they them their our ours who whom whose "
          "what when where which while with without from into onto this that these those there here will would "
          "may might can could shall should must have has had was were are been being all any some one two "
          "new also then than just only very more most much dear hello thanks thank regards best kind yes "
          "mrs miss sir madam about after before over under again please today tomorrow",
    "de": "der die das den dem des und oder aber nicht ein eine einen einem einer eines mit von für auf aus "
          "bei nach ist sind war waren hat haben wir ihr sie ihnen ich mich mir sehr herr herrn frau liebe "
          "lieber hallo grüße gruß danke bitte noch auch wie was wer wann heute morgen",
    "fr": "les des une est sont pour par avec dans sur pas que qui quoi vous nous ils elles leur leurs mon "
          "ton son mes tes ses votre vos notre nos monsieur madame bonjour merci cordialement très mais donc "
          "aux cette ces avez",
    "it": "gli della delle del dei che non per con una uno sono era come anche più suo sua suoi loro signor "
          "signore signora gentile caro cara ciao grazie saluti buongiorno",
    "es": "los las del una uno que por para con sin sus son está este esta esto pero como más muy señor "
          "señora estimado estimada hola gracias saludos usted",
    "nl": "het een van voor met aan niet ook maar zijn haar hun wij jij jullie ons onze dat die deze dit wat "
          "wie waar meneer mevrouw beste geachte hallo bedankt groeten vriendelijke",
}
_MONTHS_AND_DAYS = {
    "en": "january february march april may june july august september october november december "
          "monday tuesday wednesday thursday friday saturday sunday",
    "de": "januar februar märz april mai juni juli august september oktober november dezember "
          "montag dienstag mittwoch donnerstag freitag samstag sonntag",
    "fr": "janvier février mars avril mai juin juillet août septembre octobre novembre décembre "
          "lundi mardi mercredi jeudi vendredi samedi dimanche",
    "it": "gennaio febbraio marzo aprile maggio giugno luglio agosto settembre ottobre novembre dicembre "
          "lunedì martedì mercoledì giovedì venerdì sabato domenica",
    "es": "enero febrero marzo abril mayo junio julio agosto septiembre octubre noviembre diciembre "
          "lunes martes miércoles jueves viernes sábado domingo",
    "nl": "januari februari maart april mei juni juli augustus september oktober november december "
          "maandag dinsdag woensdag donderdag vrijdag zaterdag zondag",
}
COMMON_WORDS = frozenset(word for table in (_FUNCTION_WORDS, _MONTHS_AND_DAYS)
                         for words in table.values() for word in words.split())


def is_common_word(value: str) -> bool:
    """Whether `value` is one of COMMON_WORDS, in any case."""
    return value.casefold() in COMMON_WORDS
