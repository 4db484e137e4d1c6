"""Risk detector: normalisation, rules, negation, third parties, idioms, similarity, dismissals,
and its recall / false-positive rate on the labelled set (tests/data/risk_labelled.jsonl)."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.bench_risk import load_labelled as labelled
from topics import risk
from topics.risk import RiskModel, assess, find, load_risk_model, normalise


@pytest.fixture(scope="module")
def results():
    rows = labelled()
    model = load_risk_model()  # rules only: the ingest fast path
    return [(row, model.assess(row["body"])) for row in rows]


def share(pairs, want) -> float:
    return sum(want(a) for _, a in pairs) / len(pairs)


# --- normalisation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("k1ll mys3lf", "kill myself"),
        ("su1c1de", "suicide"),
        ("$uicide", "suicide"),
        ("d13 tonite", "die tonight"),
        ("5th period at 10am", "5th period at 10am"),  # ordinals and times are not leetspeak
        ("call 555-0178", "call 555-0178"),
    ],
)
def test_leetspeak_is_undone_inside_words_only(text, expected):
    assert normalise(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("suiside", "suicide"),
        ("sucide thoughts", "suicide thoughts"),
        ("kms", "kill myself"),
        ("i wanna kil myslef", "i want to kill myself"),
        ("kys", "kill yourself"),
        ("gonna unalive myself", "going to kill myself"),
        ("sewer slide", "suicide"),
        ("I can't breath", "i cannot breathe"),
        ("q sentido tiene, ya tengo las pastis", "que sentido tiene, ya tengo las pastillas"),
        ("suisidarme", "suicidarme"),
    ],
)
def test_misspellings_and_chat_forms_are_fixed(text, expected):
    assert normalise(text) == expected


def test_repeated_letters_are_squeezed_and_accents_folded():
    assert normalise("I want to diiiiie") == "i want to die"
    assert normalise("Convulsión, NO RESPIRA, mamá") == "convulsion, no respira, mama"


@pytest.mark.parametrize(
    ("text", "word"),
    [("🔫", "gun"), ("💊💊", "pills pills"), ("🔪", "knife"), ("🩸", "blood"), ("⚰️", "coffin"),
     ("🪢", "rope"), ("💣", "bomb")],
)  # fmt: skip
def test_emoji_become_words(text, word):
    assert normalise(text) == word


def test_emoji_alone_can_carry_the_risk():
    found = assess("💊💊💊⚰️ tonight")
    assert found.level == "urgent" and found.categories == ["self_harm"]
    assert assess("ima k1ll every1 in 3rd period 💀🔫").level == "urgent"


# --- rules ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "category"),
    [
        ("i bought pills and im taking all of them tonight", "self_harm"),
        ("thinking about jumping off the overpass after practice", "self_harm"),
        ("found a rope in his closet, he said he wants to hang himself", "self_harm"),
        ("me voy a aventar del puente hoy en la noche", "self_harm"),
        ("ya tengo las pastillas, esta noche me las tomo todas", "self_harm"),
        ("quiero cortarme las venas", "self_harm"),
        ("i'm going to shoot up the school tomorrow", "violence_threat"),
        ("he said he'll bring a gun to school on monday", "violence_threat"),
        ("voy a traer una pistola a la escuela", "violence_threat"),
        ("va a haber una balacera el viernes en la prepa", "violence_threat"),
        ("my stepdad hits me with his belt", "abuse_neglect"),
        ("mi padrastro me pega cuando toma", "abuse_neglect"),
        ("my uncle touches me when nobody is home", "abuse_neglect"),
        ("a kid collapsed in the gym and he is not breathing", "medical_emergency"),
        ("my son is having a seizure in class", "medical_emergency"),
        ("her throat is swelling, anaphylaxis, where is the epipen", "medical_emergency"),
        ("un niño no respira, llamen a la ambulancia", "medical_emergency"),
        ("está convulsionando en el patio", "medical_emergency"),
        ("some guy is threatening to post my pics unless i send more", "bullying_harassment"),
    ],
)
def test_urgent_messages_in_english_and_spanish(text, category):
    found = assess(text)
    assert found.level == "urgent", found
    assert category in found.categories, found


@pytest.mark.parametrize(
    "text",
    [
        "i hope i don't wake up tomorrow",
        "i'm ending it tonight",
        "drank a bunch of bleach, idk what to do now",
        "me quiero quitar la vida",
        "quiero cortarme",
        "hoy me mato",
        "i'm gonna bring a pistola to school",
    ],
)
def test_batch_3_coverage_of_method_and_plan_language(text):
    assert assess(text).level == "urgent", assess(text)


def test_method_words_without_the_word_suicide_are_urgent():
    for text in ("took a whole bottle of tylenol", "me tomé 15 pastillas de mi abuela",
                 "i'm on the roof of the parking garage and im done"):  # fmt: skip
        assert assess(text).level == "urgent", text


@pytest.mark.parametrize(
    "text",
    [
        "this homework is killing me",
        "me muero de risa",
        "we were shooting hoops after school",
        "dead tired after the game",
        "the band killed it last night",
        "flu shot clinic on friday",
        "we are reading To Kill a Mockingbird in 8th grade",
        "budget cuts to the music program",
        "se me murió el celular en el camión",
        "my mom is going to kill me when she sees this grade",
        "can you shoot me an email with the schedule",
        "suicide sprints at basketball practice again",
        "I'm laughing so hard I can't breathe lol",
        "Pensé que me iba a dar un infarto cuando vi la cuenta jaja",
        "Qué oso, me quiero morir, le mandé el mensaje a la maestra 🙈",
        "El taller de cocina necesita cuchillos 🔪, aceptamos donaciones",
        "Donación de sangre en la prepa el día 15 🩸",
        "we're going to shoot the school musical promo video on friday",
        "My daughter got hit in the face with a dodgeball, she's fine",
        "bomb cyclone this weekend, will school be closed?",
        "Staff training on active shooter response is moved to the 14th",
        "quiero cortarme el pelo para la graduación",
        "hoy me mato estudiando para el examen",
        "i'm ending it with him, we're done dating",
        "Mi hijo se lastimó el tobillo, no va a ir a educación física esta semana",
    ],
)
def test_idioms_and_harmless_uses_are_not_flagged(text):
    assert assess(text).level == "none", assess(text)


def test_an_idiom_does_not_hide_a_real_phrase_in_the_same_message():
    found = assess("this homework is killing me and honestly i want to kill myself")
    assert found.level == "urgent"


# --- negation, jokes, third parties ---------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "I would never kill myself",
        "I'm not going to bring a gun to school",
        "no me voy a matar, tranquila",
        "nunca me voy a tirar del puente",
        "jamás traería una pistola a la escuela",
    ],
)
def test_negation_downgrades_urgent_to_review_never_to_none(text):
    found = assess(text)
    assert found.level == "review" and found.negated, found


def test_negation_needs_to_be_close_and_in_the_same_clause():
    assert assess("I'm not joking, I'm going to kill myself tonight").level == "urgent"
    assert not assess("I don't know why but I want to kill myself").negated
    # "si no lo hace" is a condition, not a negation
    found = assess("Obligan a mi hijo a robar y si no lo hace le pegan entre varios")
    assert found.level == "urgent" and not found.negated


def test_a_message_reported_as_a_joke_is_review_unless_a_weapon_or_plan_stands():
    assert (
        assess("un niño siempre dice que va a matar a todos pero lo dice jugando").level == "review"
    )
    assert assess("he said he's bringing his dad's gun monday, not a joke").level == "urgent"


@pytest.mark.parametrize(
    "text",
    [
        "my son said he wants to kill himself tonight",
        "my daughter told me she took a bottle of pills",
        "a kid in my class said he will shoot up the school tomorrow",
        "mi hija dice que se quiere matar",
        "mi hijo me contó que un compañero trae una pistola en la mochila",
    ],
)
def test_third_party_reports_stay_urgent_and_are_tagged(text):
    found = assess(text)
    assert found.level == "urgent" and found.third_party, found


def test_first_person_messages_are_not_third_party():
    for text in ("I want to kill myself tonight", "mi papá me pega con el cinturón",
                 "they keep saying they'll jump me after school today"):  # fmt: skip
        found = assess(text)
        assert found.level != "none" and not found.third_party, (text, found)


def test_assessment_shape_and_analyze_dict():
    found = assess("my son said he wants to die and he has pills")
    assert found.level == "urgent" and 0.8 <= found.score <= 1
    assert found.matched and found.categories[0] == "self_harm"
    assert found.as_dict() == {
        "level": "urgent",
        "categories": found.categories,
        "negated": False,
        "third_party": True,
    }
    nothing = assess("what time is the bus tomorrow?")
    assert nothing.level == "none" and nothing.score == 0 and nothing.categories == []


# --- the rule engine itself -----------------------------------------------------------------------


def test_gates_never_skip_a_rule_that_matches():
    """A rule runs only when one of its literals occurs; check that no matching rule is skipped."""
    ruleset = risk.rules()
    texts = [normalise(row["body"]) for row in labelled()]
    texts += [normalise(e.text) for e in risk.load_examples()]
    for text in texts:
        present = ruleset.gates.present(text)
        for kind, rules in (("risk", ruleset.risk), ("ignore", ruleset.ignore)):
            runnable = set(map(id, ruleset.runnable(kind, present)))
            for rule in rules:
                if rule.regex.search(text):
                    assert id(rule) in runnable, (rule.source, text)


def test_every_risk_rule_is_gated_and_the_files_parse(tmp_path):
    ruleset = risk.rules()
    assert len(ruleset.risk) > 200
    assert all(rule.needs for rule in ruleset.risk + ruleset.ignore)
    bad = tmp_path / "bad.txt"
    bad.write_text("urgent self_harmm - \\bkill myself\\b\n", encoding="utf-8")
    with pytest.raises(ValueError, match="unknown category"):
        risk.rules((bad,))
    bad.write_text("define X (?:a|b\nurgent self_harm - @X\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.txt:2"):
        risk.rules((bad,))


def test_find_scores_signals_once_per_theme():
    # pills (💊 -> "pills" and "pastillas") are one theme: alone they flag nothing
    assert find(normalise("¿Dónde dejo las pastillas para la alergia? 💊")).level == "none"
    # two themes of one category make review, three urgent
    assert find(normalise("he locked himself in the bathroom with a razor")).level == "review"
    found = find(normalise("he locked himself in the bathroom with a razor and won't answer"))
    assert found.level == "urgent"


# --- similarity and dismissed messages ------------------------------------------------------------


@pytest.fixture(scope="module")
def embedder():
    from topics.embeddings import load_embedder

    return load_embedder()


@pytest.fixture(scope="module")
def similar_model(embedder):
    return load_risk_model(embedder)


def test_similarity_raises_a_close_paraphrase_of_an_example_to_review(similar_model, embedder):
    example = next(e for e in similar_model.examples if e.category == "abuse_neglect")
    paraphrase = example.text.replace(".", " again.")
    rules_only = assess(paraphrase)
    with_similarity = similar_model.assess(paraphrase)
    assert with_similarity.level != "none"
    assert risk.RANK[with_similarity.level] >= risk.RANK[rules_only.level]
    # the caller's own embedding is used as is
    vector = embedder.encode([paraphrase])[0]
    assert similar_model.assess(paraphrase, vector) == with_similarity


def test_similarity_keeps_harmless_messages_none(similar_model):
    for text in ("The bake sale raised $400, thank you all!", "Is there school on Monday?",
                 "La junta de padres es el jueves a las 6"):  # fmt: skip
        assert similar_model.assess(text).level == "none"


def test_dismissed_near_duplicates_are_downgraded_but_never_a_plan(embedder):
    dismissed = [
        "ugh everyone in my class hates me, they keep calling me names",  # review
        "i wish i was dead lol this week is so bad",  # review ideation
        "im going to jump off the bridge tonight",  # urgent with a method
    ]
    model = load_risk_model(embedder, dismissed=dismissed)
    plain = load_risk_model(embedder)
    again = "ugh everyone in my class hates me, they keep calling me names!!"
    assert plain.assess(again).level == "review"
    assert model.assess(again).level == "none"  # review -> none
    plan = "im going to jump off the bridge tonight!"
    assert plain.assess(plan).level == "urgent"
    assert model.assess(plan).level == "urgent"  # a method: never silenced
    other = "they keep calling my son names on bus 7"
    assert model.assess(other).level == plain.assess(other).level  # not a near-duplicate


def test_dismissed_urgent_without_method_goes_to_review(embedder):
    text = "i want to kill myself. i hate everything about my life"
    model = load_risk_model(embedder, dismissed=[text])
    assert load_risk_model(embedder).assess(text).level == "urgent"
    assert model.assess(text + " ").level == "review"


def test_rules_only_model_matches_dismissed_messages_by_text():
    model = load_risk_model(dismissed=["Kids keep calling me names on the bus"])
    assert model.assess("kids keep calling me names on the bus!!").level == "none"
    assert model.assess("kids keep calling my brother names on the bus").level == "review"
    model.add_dismissed(["my brother was bullied"])
    assert model.assess("My brother was bullied.").level == "none"
    assert isinstance(model, RiskModel) and model.embedder is None and not model.similarity


def test_assess_many_embeds_once(embedder):
    calls = []

    class Counting:
        key, dim = embedder.key, embedder.dim

        def encode(self, texts):
            calls.append(len(texts))
            return embedder.encode(texts)

    model = load_risk_model(Counting())
    calls.clear()
    found = model.assess_many(["i want to die", "bus is late", "me quiero morir"])
    assert calls == [3] and [f.level for f in found] == ["urgent", "none", "urgent"]
    given = np.zeros((2, embedder.dim), dtype=np.float32)
    model.assess_many(["a", "b"], given)
    assert calls == [3]


# --- the labelled set -----------------------------------------------------------------------------


def test_hard_negatives_false_positive_rate_is_under_five_percent(results):
    negatives = [(r, a) for r, a in results if r["level"] == "none"]
    assert len(negatives) >= 150
    assert share(negatives, lambda a: a.level != "none") < 0.05
    for lang in ("en", "es"):
        subset = [(r, a) for r, a in negatives if r["lang"] == lang]
        assert share(subset, lambda a: a.level != "none") < 0.06, lang


@pytest.mark.xfail(
    strict=True,
    reason="issue 6 goal (hard-negative false positives < 5%) not met on the "
    "held-out half: rules 12/136 = 8.8% (0% on the tune half, 4.4% overall); with similarity "
    "and the learned scorer 11.0%",
)
def test_issue_goal_false_positives_on_the_held_out_half(results):
    negatives = [(r, a) for r, a in results if r["level"] == "none" and r["half"] == "heldout"]
    assert share(negatives, lambda a: a.level != "none") < 0.05


def test_urgent_and_review_recall_floors(results):
    """Regression floors at the measured level (see the report). The held-out half was never
    looked at while writing the rules: its figures are the honest estimate."""
    urgent = [(r, a) for r, a in results if r["level"] == "urgent"]
    review = [(r, a) for r, a in results if r["level"] == "review"]
    assert len(urgent) + len(review) >= 180
    assert share(urgent, lambda a: a.level == "urgent") >= 0.86
    assert share(urgent, lambda a: a.level != "none") >= 0.92
    assert share(review, lambda a: a.level != "none") >= 0.75
    held_out = [(r, a) for r, a in urgent if r["half"] == "heldout"]
    assert share(held_out, lambda a: a.level == "urgent") >= 0.78
    assert share(held_out, lambda a: a.level != "none") >= 0.86
    for lang in ("en", "es"):
        subset = [(r, a) for r, a in urgent if r["lang"] == lang]
        assert share(subset, lambda a: a.level == "urgent") >= 0.84, lang


@pytest.mark.xfail(
    strict=True,
    reason="issue 6 goal (urgent recall >= 98%) not met: rules 92.9% overall, 86.5% held-out; "
    "with the learned scorer (rescoring step) 96.3% overall, 93.2% held-out",
)
def test_issue_goal_urgent_recall_98_percent(results):
    urgent = [(r, a) for r, a in results if r["level"] == "urgent"]
    assert share(urgent, lambda a: a.level == "urgent") >= 0.98


def test_negated_and_third_party_flags_on_tagged_messages(results):
    flagged = [(r, a) for r, a in results if r["level"] != "none" and a.level != "none"]
    assert share(flagged, lambda a: True) > 0
    negated_ok = sum(r["negated"] == a.negated for r, a in flagged) / len(flagged)
    third_ok = sum(r["third_party"] == a.third_party for r, a in flagged) / len(flagged)
    assert negated_ok >= 0.94 and third_ok >= 0.90
    tagged = [(r, a) for r, a in flagged if r["negated"]]
    assert all(a.level == "review" for _, a in tagged if a.negated)  # never none, never urgent
    reported = [(r, a) for r, a in flagged if r["third_party"]]
    assert share(reported, lambda a: a.third_party) >= 0.85
