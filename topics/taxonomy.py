"""The school-domain taxonomy that guides topic fits: key -> English and Spanish seed words.

Seeds nudge a fit towards these 16 topics (DESIGN.md) without forcing them: a fit still finds
topics nobody listed. Seed words are single lowercase words of 3+ letters (what the vectorizer
counts); the key names the topic in ``topics.seed`` and matches the demo corpus's file names.
"""

from __future__ import annotations

# key: (English seed words, Spanish seed words)
_SEEDS = {
    "transportation": (
        "bus buses route stop driver ride transportation",
        "autobús camión ruta parada chofer transporte",
    ),
    "food_service": (
        "lunch breakfast cafeteria meal menu food allergy",
        "almuerzo desayuno cafetería comida menú alergia",
    ),
    "safety_security": (
        "safety security lockdown threat drill police visitor",
        "seguridad amenaza simulacro policía peligro vigilancia",
    ),
    "bullying": (
        "bullying bully bullied harassment teasing mean fight",
        "acoso molestan burlan pelea insultos intimidación",
    ),
    "attendance": (
        "absent absence attendance tardy sick excuse truancy",
        "ausente falta faltas asistencia tarde justificante",
    ),
    "grades_report_cards": (
        "grades grade report card gpa portal failing",
        "calificaciones notas boleta promedio reprobando examen",
    ),
    "special_education": (
        "iep special plan accommodations services therapy aide",
        "educación especial adaptaciones servicios terapia evaluación",
    ),
    "technology_devices": (
        "chromebook laptop wifi password login device charger",
        "computadora contraseña internet tableta cargador dispositivo",
    ),
    "enrolment_registration": (
        "enrollment enroll registration register kindergarten transfer documents",
        "inscripción inscribir registro matrícula kínder documentos",
    ),
    "health": (
        "nurse medication vaccine flu lice illness fever",
        "enfermera medicina vacuna gripe piojos fiebre",
    ),
    "facilities": (
        "building heat roof leak bathroom repair broken",
        "edificio calefacción techo gotera baño baños reparar",
    ),
    "athletics_activities": (
        "game team practice coach tryouts club sports",
        "partido equipo práctica entrenador deportes torneo",
    ),
    "weather_closures": (
        "snow closed closure delay ice storm cancelled",
        "nieve cerrada cierre retraso hielo tormenta",
    ),
    "staff_teachers": (
        "teacher teachers staff substitute principal contract strike",
        "maestro maestra maestros sustituto director huelga",
    ),
    "communication": (
        "email newsletter app notification messages website translation",
        "correo mensajes aviso avisos notificación traducción",
    ),
    "budget_bond_levy": (
        "budget bond levy tax taxes cuts funding",
        "presupuesto bono impuesto impuestos recortes fondos",
    ),
}

TAXONOMY: dict[str, list[str]] = {
    key: [*english.split(), *spanish.split()] for key, (english, spanish) in _SEEDS.items()
}


def seed_topic_list() -> list[list[str]]:
    """The seed words in taxonomy order, as BERTopic's ``seed_topic_list`` takes them."""
    return [list(words) for words in TAXONOMY.values()]


def match_seed(words: list[str], min_overlap: int = 2) -> str | None:
    """The taxonomy key whose seed words overlap ``words`` most (at least ``min_overlap``)."""
    top = set(words)
    best, best_overlap = None, min_overlap - 1
    for key, seeds in TAXONOMY.items():
        overlap = len(top & set(seeds))
        if overlap > best_overlap:
            best, best_overlap = key, overlap
    return best
