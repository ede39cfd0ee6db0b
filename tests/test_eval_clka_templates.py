"""CLKA relation templates and closed-class entity tables."""

from megatron_prealign.synthetic.clka_templates import CLOSED_ENTITIES, LANGUAGES, OPEN_TYPES, RELATIONS


def test_relations_are_wikidata_ids_with_all_templates():
    assert len(RELATIONS) >= 20
    assert len({r.pid for r in RELATIONS}) == len(RELATIONS)
    for r in RELATIONS:
        assert r.pid.startswith("P") and r.pid[1:].isdigit()
        assert set(r.templates) == set(LANGUAGES)
        for t in r.templates.values():
            assert t.count("{s}") == 1 and t.count("{o}") == 1
    assert {"P1290", "P108", "P19", "P69"} <= {r.pid for r in RELATIONS}


def test_object_types_known_and_closed_entities_unique_per_language():
    for r in RELATIONS:
        assert r.object_type in OPEN_TYPES or r.object_type in CLOSED_ENTITIES
    for kind, rows in CLOSED_ENTITIES.items():
        assert len(rows) >= 4, kind
        for lang in LANGUAGES:
            forms = [row[lang] for row in rows]
            assert len(set(forms)) == len(forms) and all(forms), (kind, lang)
