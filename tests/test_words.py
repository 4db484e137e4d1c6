"""Word weights for word clouds, and the vocabulary under them: stopwords, merged word forms,
and never an email address, phone number, link or person's name."""

from __future__ import annotations

import importlib.util
import pickle
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from sqlalchemy import insert

from core.db import write_connection
from core.models import Message, Topic
from ingestion.demo import load_corpus
from topics.vocabulary import (
    Analyzer,
    auto_label,
    fold,
    make_vectorizer,
    scrub,
    stem,
    stopwords,
    strip_pii,
)
from topics.words import class_tfidf, topic_words, weigh_words

T0 = datetime(2026, 2, 2, 13, 0, tzinfo=UTC)

PII = [
    "(555) 010-2233",
    "555.010.2233",
    "+1 555 010 2233",
    "555-010-2233",
    "(555)010-2233",
    "5550102233",
    "+52 1 55 1234 5678",
    "ana.perez@example.org",
    "ANA.PEREZ@EXAMPLE.ORG",
    "mailto:ana.perez@example.org",
    "<ana_perez+pta@mail.example.co.uk>",
    "www.example.org/x",
    "https://example.org/lunch?menu=1&day=2",
    "HTTP://EXAMPLE.ORG/Ana-Perez",
    "example.org/lunch-menu",
    "bit.ly/3xYzAna",
    "@ana_perez",
]

# People named in the demo corpus (found by reading it): none may ever be a counted word.
DEMO_NAMES = str.split(
    """
Marcus Mateo Kevin Diego Morales Guadalupe Luis Ruiz Valeria Brandon Dana Tom Kim Tyler Brooks
Carmen Daniel Ramírez Owen Lily Jorge Castillo Elena Nguyen Salinas Camila Eli Miguel Greg
Teresa Ernesto Beatriz Sofía Rosa Harper Priya Marisol Emiliano Jennifer Cruz Caleb Vargas
Fuentes Herrera Ethan Verónica Ava Liam Claudia Andrés Ortega Denise Stephanie Frank Ana Jenna
Mendoza Ramón Janet Hernández Brennan Silvia Carla Cole Tomás López Alma Rocío Jimenez Peña
Jaylen Lupita Harmon Gary Annie Hector Patricia Anika Jada Leo Zoe Whitfield Dorothy Klein
Ricardo Chris Paula Josefina Ramos Jason Miller Noah Angela Becker Walt Raul Hannah Yesenia
Rafael Ferrer Norma Natalie Walter Sharon Olivia Tony Ben Isaac Adriana Fernando Aguilar Derek
Lorraine Jaden Valentina Samuel Adrián Lang Olsen Lawson Carlos Karla Alexis Lisa Maddie Patty
Jazmín Simmons Chloe Sebastián Alberto Jimena Martha Monica Hale Jacob Villalobos Iván Montes
Fernanda Rachel Nicole Ruth Martínez Walsh Alejandra Santiago Courtney Webb Daniela Torres Paul
Ximena Delgado Iker Aaron Sophie Jonah Beth Kelly Melissa Reyes Ortiz Bennett Patterson Rivera
Gómez Flores Okafor Okoye Dolores Maya Mike Linda Gloria Tran Howard Collins Hughes Jiménez
Norris Daniels Juan Sofi Noor Raj Kaur Trinh Novak Kowalski Salgado Holloway Whitaker Morrison
Freeman Larkin Hadley Grady Brandt Gretchen Joanne Renee Yvonne Caroline Ellie Nadia Gino Jen
"""
)

# Live messages about three topics; the names in them must never show, the topic words must.
TOPIC_MESSAGES = {
    1: [
        "The bus was late again this morning, Mr. Patel. Route 7 never showed up.",
        "el autobús no pasó hoy por la parada, mi hija Valentina esperó una hora",
        "Bus 12 driver skipped our stop. Call me at (555) 010-2233 or ana.perez@example.org",
        "Los autobuses llegan tarde todos los días a la parada de Elm",
        "Our bus route changed and nobody told us. Buses are late every day.",
        "¿Por qué el autobús de la ruta 5 llega tan tarde? Mi hijo Mateo pierde clase.",
        "Coach Rivera says the late bus leaves at 5 from the gym.",
        "bus driver on route 3 was great today, thank you!",
    ],
    2: [
        "Lunch was cold again and the cafeteria ran out of pizza.",
        "el almuerzo de mi hijo estaba frío, la comida de la cafetería es mala",
        "Ms. Johnson never answers about the lunch account balance.",
        "Can the lunch menu list allergens? My son Ethan has a peanut allergy.",
        "la maestra Gómez dice que el almuerzo es muy corto",
        "lunch line is so long kids only get 10 minutes to eat",
        "Thank you for the new breakfast menu! https://example.org/menu",
        "Mi hija no come el almuerzo, la comida no le gusta. Sra. López",
    ],
    3: [
        "La maestra de mi hija no contesta los mensajes. Gracias, Marisol",
        "Ms. Johnson never answers my emails about homework",
        "the maestra sends great notes home, the maestros here are wonderful",
        "Our teacher is out and the substitute teachers change every day",
        "Mr. Patel, my daughter's teacher, is amazing with the kids",
        "maestros y maestras merecen mejor salario",
        "Teachers need a raise. Please call (555) 010-2233 to support them.",
        "La maestra Valentina es la mejor maestra de la escuela, mi hija la quiere mucho",
    ],
}
NEVER = {
    "patel", "valentina", "johnson", "rivera", "mateo", "ethan", "gomez", "lopez", "marisol",
    "ana", "perez", "example", "org", "https", "www", "mailto", "elm",
}  # fmt: skip


@pytest.fixture(scope="module")
def corpus():
    return load_corpus()


def store(engine, messages: dict[int | None, list[str]], start: datetime, school=None) -> None:
    rows = []
    for topic, bodies in messages.items():
        for k, body in enumerate(bodies):
            rows.append(
                {
                    "source_kind": "sms",
                    "source_name": "test",
                    "external_id": f"{start.isoformat()}-{topic}-{k}",
                    "received_at": start + timedelta(minutes=3 * k),
                    "body": body,
                    "school": school,
                    "content_hash": f"{topic}-{k}",
                    "topic_id": topic,
                    "topic_score": 0.9 if topic else 0.1,
                }
            )
    with write_connection(engine) as conn:
        conn.execute(insert(Message), rows)


def add_topics(engine, ids, words=None) -> None:
    with write_connection(engine) as conn:
        conn.execute(insert(Topic), [{"id": i, "label": f"t{i}", "words": words} for i in ids])


def words_of(weights) -> set[str]:
    return {w for w, _ in weights}


@pytest.mark.parametrize("pii", PII)
def test_scrub_and_the_analyzer_leave_nothing_of_emails_phones_and_links(settings, pii):
    text = f"Please reply {pii} about the lunch form"
    cleaned = scrub(text)
    assert not any(ch.isdigit() for ch in cleaned), cleaned
    assert "@" not in cleaned and "example" not in cleaned and "http" not in cleaned
    assert "www" not in cleaned and "perez" not in cleaned and "bit.ly" not in cleaned
    assert cleaned.split()[-3:] == ["the", "lunch", "form"]
    assert strip_pii(text).endswith("about the lunch form")  # case kept
    analyzer = Analyzer(stopwords(settings))
    assert analyzer(text) == ["reply", "lunch", "form"]


def test_scrub_keeps_times_grades_and_plain_words():
    text = "Bus 12 left at 7:45, grade 6 math, room 204, 3rd period; Route 9 at 3:10 p.m."
    assert scrub(text) == text.lower()


def test_word_forms_merge_in_english_and_spanish():
    groups = [
        ["bully", "bullies", "bullying", "bullied", "Bullying"],
        ["bus", "buses"],
        ["autobús", "autobuses", "autobus"],
        ["maestra", "maestro", "maestros", "maestras"],
        ["route", "routes"],
        ["lunch", "lunches"],
        ["grade", "grades"],
        ["calificación", "calificaciones"],
        ["hijo", "hija", "hijos"],
        ["meeting", "meetings"],
        ["cancel", "canceled", "canceling"],
        ["closed", "close", "closing"],
        ["class", "classes"],
        ["cafetería", "cafeteria"],
    ]
    for group in groups:
        assert len({stem(w) for w in group}) == 1, group
    apart = ["bus", "but", "busy", "lunch", "launch", "class", "clase", "route", "rout", "grade"]
    assert len({stem(w) for w in apart}) >= len(apart) - 2  # rout / route may share a key


def test_a_merged_word_shows_as_the_form_people_wrote_most(settings):
    docs = [
        "bullying at recess",
        "more bullying on the bus",
        "he was bullied on buses",
        "the bullies took his lunch",
        "bullying again",
        "los autobuses llegan tarde",
        "el autobús no llegó",
        "el autobús otra vez",
        "the maestra said",
        "los maestros dicen",
        "la maestra dice",
    ]
    vectorizer = make_vectorizer(settings, min_df=1)
    matrix = vectorizer.fit_transform(docs)
    words = list(vectorizer.get_feature_names_out())
    counts = dict(zip(words, np.asarray(matrix.sum(axis=0)).ravel(), strict=True))
    assert counts["bullying"] == 5 and "bullied" not in words and "bullies" not in words
    assert counts["bus"] == 2 and "buses" not in words  # "bus" and "buses" once each: shorter
    assert counts["autobús"] == 3 and "autobuses" not in words
    assert counts["maestra"] == 3 and "maestros" not in words
    # Counting new text later uses the same forms (as BERTopic does after fitting).
    assert vectorizer.transform(["The bullies and the buses"]).sum() == 2
    assert vectorizer.build_analyzer()("The bullies and the buses") == ["bullying", "bus"]


def test_names_never_become_words_by_list_title_greeting_or_capitals(settings):
    docs = [
        "Ms. Johnson never answers",
        "mi hija Valentina no quiere ir a la escuela",
        "Coach Rivera cancelled practice again",
        "Mr. Patel is the best teacher",
        "mr bennett did not reply about the bus",
        "la maestra Okonkwo dice que mi hijo no hizo la tarea",
        "Sra. de la Fuente, el autobús no pasó",
        "Hi Brigitte, the lunch line is too long",
        "Thank you,\nTamsin",
        "Thanks for the update on the bus.\n\nRegards,\nJ. Abernathy",
        "We talked to Wojcik yesterday and Wojcik said the bus is fine. Wojcik again.",
        "maya is sick today, wont be in",
        "the bus is late. Lunch is cold. The maestra is kind.",
    ]
    analyzer = Analyzer(stopwords(settings))
    analyzer.learn(docs)
    counted = {w for doc in docs for w in analyzer(doc)}
    names = {"johnson", "valentina", "rivera", "patel", "bennett", "okonkwo", "fuente"}
    names |= {"brigitte", "tamsin", "abernathy", "wojcik", "maya"}
    assert not counted & names, counted & names
    assert {"bus", "lunch", "maestra", "practice", "teacher", "sick", "cold"} <= counted
    # An unseen analyzer (no learning) still drops listed names and names after titles.
    fresh = Analyzer(stopwords(settings))
    text = "Coach Okonkwo and Ms Abernathy emailed Valentina about the bus"
    assert fresh(text) == ["coach", "emailed", "bus"]


def test_capitalised_words_that_are_not_names_stay(settings):
    docs = [
        "The Chromebook screen cracked on Monday",
        "English classes for parents on Tuesday",
        "We love Cedar Ridge and the Oak Park staff",
        "the Bus was late",  # a topic word written with a capital
        "bus late again",
    ]
    analyzer = Analyzer(stopwords(settings), schools=["Cedar Ridge Middle School", "Oak Park"])
    analyzer.learn(docs)
    counted = {w for doc in docs for w in analyzer(doc)}
    assert {"chromebook", "monday", "english", "cedar", "ridge", "oak", "park", "bus"} <= counted


def test_no_person_named_in_the_demo_corpus_is_ever_a_word(settings, corpus):
    schools = {m.school for m in corpus if m.school}
    vectorizer = make_vectorizer(settings, min_df=1, schools=schools)
    vectorizer.fit_transform([m.body for m in corpus])
    vocabulary = {fold(w) for w in vectorizer.get_feature_names_out()}
    assert len(vocabulary) > 2000
    leaked = sorted(name for name in DEMO_NAMES if fold(name) in vocabulary)
    assert leaked == []
    # Everyday words of both languages are there.
    assert {"bus", "lunch", "maestra", "autobús", "almuerzo", "teacher", "calificaciones"} <= {
        w for w in vectorizer.get_feature_names_out()
    }


def test_demo_topic_clouds_read_as_their_topic(settings, corpus):
    names = sorted({m.topic for m in corpus})
    docs = [m.body for m in corpus]
    classes = [names.index(m.topic) for m in corpus]
    schools = sorted({m.school for m in corpus if m.school})

    def cloud(topic: str | None, n: int = 10) -> list[str]:
        topic_id = None if topic is None else names.index(topic)
        return [w for w, _ in weigh_words(settings, docs, classes, topic_id, n, schools=schools)]

    assert cloud("transportation")[:2] == ["bus", "route"]
    assert {"ruta", "autobús", "parada", "chofer"} & set(cloud("transportation", 15))
    assert cloud("bullying")[0] == "bullying"
    assert cloud("special_education")[0] == "iep"
    assert {"lunch", "almuerzo", "cafeteria", "menú"} & set(cloud("food_service", 10))
    everything = cloud(None, 30)
    assert "bus" in everything[:3]
    # Words everyone uses whatever the topic, and school names, do not lead the all-messages
    # cloud (they lead plain frequency: hijo, grade, school, kids, escuela).
    assert not {"hijo", "school", "kids", "escuela", "westview", "park"} & set(everything)
    assert not {fold(w) for w in cloud(None, 100)} & {fold(n) for n in DEMO_NAMES}


def test_topic_words_per_window_and_topic(db_engine, settings):
    add_topics(db_engine, [1, 2, 3, 4])
    store(db_engine, TOPIC_MESSAGES, T0, school="Lincoln Elementary")
    later = {4: ["Snow day tomorrow, schools closed", "nieve mañana, escuelas cerradas"] * 3}
    later[None] = ["random unrelated question about the parking permit"] * 2
    store(db_engine, later, T0 + timedelta(days=2))
    window = (T0, T0 + timedelta(days=1))

    bus = topic_words(db_engine, settings, 1, *window)
    assert bus[0] == ("bus", 1.0)
    assert {"autobús", "parada", "route", "late"} <= words_of(bus)
    lunch = topic_words(db_engine, settings, 2, *window)
    assert lunch[0][0] in {"lunch", "almuerzo"}
    assert {"lunch", "almuerzo", "cafeteria", "comida"} <= words_of(lunch)
    teachers = topic_words(db_engine, settings, 3, *window)
    assert {"maestra", "teacher"} <= words_of(teachers)
    for weights in (bus, lunch, teachers):
        assert weights[0][1] == 1.0
        assert all(0 < w <= 1 for _, w in weights)
        assert [w for _, w in weights] == sorted((w for _, w in weights), reverse=True)
        assert not words_of(weights) & NEVER
        assert not {"snow", "nieve"} & words_of(weights)  # another window's words

    everything = topic_words(db_engine, settings, None, *window)
    assert {"bus", "lunch", "maestra"} <= words_of(everything)
    assert not words_of(everything) & (NEVER | {"snow", "parking"})
    assert len(topic_words(db_engine, settings, None, *window, top_n=5)) == 5
    assert len(topic_words(db_engine, settings, 1, *window, top_n=3)) == 3

    # The later window: only topic 4 and unassigned messages.
    later_window = (T0 + timedelta(days=2), T0 + timedelta(days=3))
    assert topic_words(db_engine, settings, 1, *later_window) == []
    snow = words_of(topic_words(db_engine, settings, 4, *later_window))
    assert {"snow", "nieve"} <= snow and "parking" not in snow
    assert topic_words(db_engine, settings, None, T0 - timedelta(days=9), T0) == []


def test_all_messages_cloud_before_any_topic_exists(db_engine, settings):
    store(db_engine, {None: TOPIC_MESSAGES[1] + TOPIC_MESSAGES[2]}, T0)
    weights = topic_words(db_engine, settings, None, T0, T0 + timedelta(hours=2))
    assert weights and weights[0][1] == 1.0
    assert {"bus", "lunch"} <= words_of(weights)
    assert not words_of(weights) & NEVER


def test_topic_words_of_a_sampled_big_window_keep_the_topic(db_engine, settings):
    add_topics(db_engine, [1, 2, 3])
    store(db_engine, TOPIC_MESSAGES, T0)
    window = (T0, T0 + timedelta(hours=1))
    full = topic_words(db_engine, settings, 1, *window)
    sampled = topic_words(db_engine, settings, 1, *window, max_messages=12)
    assert sampled[0][0] == full[0][0] == "bus"
    assert not words_of(sampled) & NEVER


def test_topic_words_mark_known_topic_words_as_not_names(db_engine, settings):
    """A word written with a capital mid-sentence ("the Referendum") stays a word when it is one
    of the topics' words; without that knowledge it is taken for a name, like "Quigley"."""
    bodies = ["Vote yes on the Referendum", "the Referendum vote is Tuesday", "we asked Quigley"]
    unknown = words_of(weigh_words(settings, bodies * 2, [1] * 6, 1))
    assert "referendum" not in unknown and "quigley" not in unknown and "vote" in unknown
    add_topics(db_engine, [1], words=[["referendum", 1.0], ["vote", 0.5]])
    store(db_engine, {1: bodies * 2}, T0)
    known = words_of(topic_words(db_engine, settings, 1, T0, T0 + timedelta(days=1)))
    assert "referendum" in known and "quigley" not in known


def test_the_district_name_and_its_acronyms_are_never_words(settings):
    custom = settings.model_copy(update={"extra_stopwords": "Bluebird, PTO"})
    analyzer = Analyzer(stopwords(custom))
    text = "Maple Valley SD #MVSD @MapleValleySD #maplevalleysd MVHS bluebird pto levy"
    assert analyzer(text) == ["levy"]


def test_class_tfidf_matches_bertopic(corpus):
    """Ours equals BERTopic's ClassTfidfTransformer(reduce_frequent_words=True); its module is
    loaded from its file, not through the (slow to import) bertopic package."""
    spec = importlib.util.find_spec("bertopic")
    path = Path(spec.origin).parent / "vectorizers" / "_ctfidf.py"
    module_spec = importlib.util.spec_from_file_location("bertopic_ctfidf", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    counts = sp.csr_matrix(np.random.default_rng(3).poisson(0.7, size=(12, 300)))
    theirs = module.ClassTfidfTransformer(reduce_frequent_words=True).fit(counts)
    expected = theirs.transform(counts.astype(np.float64)).toarray()
    np.testing.assert_allclose(class_tfidf(counts), expected, rtol=1e-12)


def test_auto_label_reads_well_and_merges_forms():
    words = [("bus", 1.0), ("buses", 0.9), ("late", 0.8), ("Bus", 0.75), ("route", 0.7)]
    assert auto_label(words) == "bus · late · route"
    assert auto_label([("maestra", 1.0), ("maestros", 0.8)], n=3) == "maestra"
    assert auto_label([]) == "(no words)"


def test_the_vectorizer_survives_pickling_as_bertopic_saves_it(settings):
    vectorizer = make_vectorizer(settings, min_df=1)
    vectorizer.fit(["Ms. Johnson: the buses are late", "bus late again", "autobuses tarde"])
    again = pickle.loads(pickle.dumps(vectorizer))
    assert list(again.get_feature_names_out()) == list(vectorizer.get_feature_names_out())
    assert "johnson" not in again.get_feature_names_out()
    assert again.transform(["the buses"]).sum() == 1
