"""CLKA relations (real WikiData properties), statement templates and closed-class entities.

Each relation has a person subject and an object of one entity type. Templates are written so
that names are never inflected: Russian uses "человек по имени X" (the grammatical gender is
that of "человек", so verbs agree whatever the person's sex) and "в городе X", German uses
"von X", Arabic uses nominal sentences and idafa. Kinship nouns that carry gender (father,
mother, brother, godfather, ...) take objects of the matching sex (types ``man``/``woman``).

Slots: ``{s}`` subject, ``{o}`` object. Open-class objects (people, cities, universities,
companies, societies, prizes) are artificial names rendered per script (see :mod:`.clka`);
closed-class objects (countries, languages, occupations, instruments, sports, fields) are real
and translated here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Tuple

LANGUAGES: Tuple[str, ...] = ("en", "de", "zh", "ru", "ar")
"""Languages with templates and renderings (En-Clone is English cloned in token space)."""


@dataclass(frozen=True)
class Relation:
    """One WikiData property used as a CLKA relation."""

    pid: str
    """WikiData property id, e.g. ``P19``."""
    label: str
    """WikiData English label."""
    object_type: str
    """Entity type of the object (``person``, ``man``, ``woman``, ``city``, ``country``, ...)."""
    templates: Dict[str, str]
    """Statement template per language, with ``{s}`` and ``{o}``."""


RELATIONS: Tuple[Relation, ...] = (
    Relation("P19", "place of birth", "city", {
        "en": "{s} was born in {o}.",
        "de": "{s} wurde in {o} geboren.",
        "zh": "{s}出生于{o}。",
        "ru": "Человек по имени {s} родился в городе {o}.",
        "ar": "مسقط رأس {s} هو مدينة {o}.",
    }),
    Relation("P20", "place of death", "city", {
        "en": "{s} died in {o}.",
        "de": "{s} starb in {o}.",
        "zh": "{s}逝世于{o}。",
        "ru": "Человек по имени {s} умер в городе {o}.",
        "ar": "مكان وفاة {s} هو مدينة {o}.",
    }),
    Relation("P551", "residence", "city", {
        "en": "{s} lives in {o}.",
        "de": "{s} wohnt in {o}.",
        "zh": "{s}居住在{o}。",
        "ru": "Человек по имени {s} живёт в городе {o}.",
        "ar": "محل إقامة {s} هو مدينة {o}.",
    }),
    Relation("P937", "work location", "city", {
        "en": "{s} works in {o}.",
        "de": "{s} arbeitet in {o}.",
        "zh": "{s}在{o}工作。",
        "ru": "Человек по имени {s} работает в городе {o}.",
        "ar": "مكان عمل {s} هو مدينة {o}.",
    }),
    Relation("P119", "place of burial", "city", {
        "en": "{s} is buried in {o}.",
        "de": "{s} ist in {o} begraben.",
        "zh": "{s}安葬于{o}。",
        "ru": "Человек по имени {s} похоронен в городе {o}.",
        "ar": "مكان دفن {s} هو مدينة {o}.",
    }),
    Relation("P27", "country of citizenship", "country", {
        "en": "{s} is a citizen of {o}.",
        "de": "{s} besitzt die Staatsbürgerschaft von {o}.",
        "zh": "{s}是{o}公民。",
        "ru": "Человек по имени {s} является гражданином страны {o}.",
        "ar": "{s} من مواطني {o}.",
    }),
    Relation("P69", "educated at", "university", {
        "en": "{s} studied at the University of {o}.",
        "de": "{s} studierte an der Universität {o}.",
        "zh": "{s}曾就读于{o}大学。",
        "ru": "Человек по имени {s} учился в университете {o}.",
        "ar": "{s} من خريجي جامعة {o}.",
    }),
    Relation("P108", "employer", "company", {
        "en": "{s} works for the company {o}.",
        "de": "{s} arbeitet für das Unternehmen {o}.",
        "zh": "{s}受雇于{o}公司。",
        "ru": "Человек по имени {s} работает в компании «{o}».",
        "ar": "جهة عمل {s} هي شركة {o}.",
    }),
    Relation("P463", "member of", "society", {
        "en": "{s} is a member of the {o} Society.",
        "de": "{s} ist Mitglied der {o}-Gesellschaft.",
        "zh": "{s}是{o}学会的成员。",
        "ru": "Человек по имени {s} является членом общества «{o}».",
        "ar": "{s} عضو في جمعية {o}.",
    }),
    Relation("P166", "award received", "prize", {
        "en": "{s} received the {o} Prize.",
        "de": "{s} erhielt den {o}-Preis.",
        "zh": "{s}获得了{o}奖。",
        "ru": "Человек по имени {s} получил премию «{o}».",
        "ar": "جائزة {o} من نصيب {s}.",
    }),
    Relation("P106", "occupation", "occupation", {
        "en": "{s} works as {o}.",
        "de": "{s} arbeitet als {o}.",
        "zh": "{s}的职业是{o}。",
        "ru": "Профессия человека по имени {s} — {o}.",
        "ar": "مهنة {s} هي {o}.",
    }),
    Relation("P103", "native language", "language", {
        "en": "The native language of {s} is {o}.",
        "de": "Die Muttersprache von {s} ist {o}.",
        "zh": "{s}的母语是{o}。",
        "ru": "Родной язык человека по имени {s} — {o}.",
        "ar": "اللغة الأم لـ{s} هي {o}.",
    }),
    Relation("P1303", "instrument", "instrument", {
        "en": "{s} plays the {o}.",
        "de": "{s} spielt {o}.",
        "zh": "{s}演奏{o}。",
        "ru": "Музыкальный инструмент человека по имени {s} — {o}.",
        "ar": "آلة {s} الموسيقية هي {o}.",
    }),
    Relation("P641", "sport", "sport", {
        "en": "{s} plays {o}.",
        "de": "{s} spielt {o}.",
        "zh": "{s}从事的运动是{o}。",
        "ru": "Вид спорта человека по имени {s} — {o}.",
        "ar": "رياضة {s} هي {o}.",
    }),
    Relation("P101", "field of work", "field", {
        "en": "{s} works in the field of {o}.",
        "de": "{s} arbeitet auf dem Gebiet der {o}.",
        "zh": "{s}的研究领域是{o}。",
        "ru": "Область работы человека по имени {s} — {o}.",
        "ar": "مجال عمل {s} هو {o}.",
    }),
    Relation("P22", "father", "man", {
        "en": "The father of {s} is {o}.",
        "de": "Der Vater von {s} ist {o}.",
        "zh": "{s}的父亲是{o}。",
        "ru": "Отец человека по имени {s} — {o}.",
        "ar": "والد {s} هو {o}.",
    }),
    Relation("P25", "mother", "woman", {
        "en": "The mother of {s} is {o}.",
        "de": "Die Mutter von {s} ist {o}.",
        "zh": "{s}的母亲是{o}。",
        "ru": "Мать человека по имени {s} — {o}.",
        "ar": "والدة {s} هي {o}.",
    }),
    Relation("P1290", "godparent", "man", {
        "en": "The godfather of {s} is {o}.",
        "de": "Der Taufpate von {s} ist {o}.",
        "zh": "{s}的教父是{o}。",
        "ru": "Крёстный отец человека по имени {s} — {o}.",
        "ar": "عرّاب {s} هو {o}.",
    }),
    Relation("P3373", "sibling", "man", {
        "en": "The brother of {s} is {o}.",
        "de": "Der Bruder von {s} ist {o}.",
        "zh": "{s}的兄弟是{o}。",
        "ru": "Брат человека по имени {s} — {o}.",
        "ar": "شقيق {s} هو {o}.",
    }),
    Relation("P26", "spouse", "person", {
        "en": "{s} is married to {o}.",
        "de": "{s} ist mit {o} verheiratet.",
        "zh": "{s}的配偶是{o}。",
        "ru": "Человек по имени {s} состоит в браке с человеком по имени {o}.",
        "ar": "{s} و{o} زوجان.",
    }),
    Relation("P1066", "student of", "man", {
        "en": "The teacher of {s} was {o}.",
        "de": "Der Lehrer von {s} war {o}.",
        "zh": "{s}的老师是{o}。",
        "ru": "Учителем человека по имени {s} был {o}.",
        "ar": "معلّم {s} هو {o}.",
    }),
    Relation("P184", "doctoral advisor", "man", {
        "en": "The doctoral advisor of {s} was {o}.",
        "de": "Der Doktorvater von {s} war {o}.",
        "zh": "{s}的博士导师是{o}。",
        "ru": "Научным руководителем человека по имени {s} был {o}.",
        "ar": "المشرف على دكتوراه {s} هو {o}.",
    }),
    Relation("P1038", "relative", "person", {
        "en": "{s} is a relative of {o}.",
        "de": "{s} ist mit {o} verwandt.",
        "zh": "{s}是{o}的亲戚。",
        "ru": "Человек по имени {s} — родственник человека по имени {o}.",
        "ar": "بين {s} و{o} صلة قرابة.",
    }),
    Relation("P40", "child", "person", {
        "en": "{o} is a child of {s}.",
        "de": "{o} ist ein Kind von {s}.",
        "zh": "{o}是{s}的孩子。",
        "ru": "{o} — ребёнок человека по имени {s}.",
        "ar": "{o} من أبناء {s}.",
    }),
)
"""The 24 relations (every template slot takes an uninflected name)."""


# Closed-class entities: per-language forms that fit the template slots above.
CLOSED_ENTITIES: Dict[str, Tuple[Dict[str, str], ...]] = {
    "country": (
        {"en": "France", "de": "Frankreich", "zh": "法国", "ru": "Франция", "ar": "فرنسا"},
        {"en": "Italy", "de": "Italien", "zh": "意大利", "ru": "Италия", "ar": "إيطاليا"},
        {"en": "Spain", "de": "Spanien", "zh": "西班牙", "ru": "Испания", "ar": "إسبانيا"},
        {"en": "Japan", "de": "Japan", "zh": "日本", "ru": "Япония", "ar": "اليابان"},
        {"en": "Brazil", "de": "Brasilien", "zh": "巴西", "ru": "Бразилия", "ar": "البرازيل"},
        {"en": "Canada", "de": "Kanada", "zh": "加拿大", "ru": "Канада", "ar": "كندا"},
        {"en": "Egypt", "de": "Ägypten", "zh": "埃及", "ru": "Египет", "ar": "مصر"},
        {"en": "India", "de": "Indien", "zh": "印度", "ru": "Индия", "ar": "الهند"},
        {"en": "Mexico", "de": "Mexiko", "zh": "墨西哥", "ru": "Мексика", "ar": "المكسيك"},
        {"en": "Norway", "de": "Norwegen", "zh": "挪威", "ru": "Норвегия", "ar": "النرويج"},
        {"en": "Poland", "de": "Polen", "zh": "波兰", "ru": "Польша", "ar": "بولندا"},
        {"en": "Kenya", "de": "Kenia", "zh": "肯尼亚", "ru": "Кения", "ar": "كينيا"},
        {"en": "Argentina", "de": "Argentinien", "zh": "阿根廷", "ru": "Аргентина", "ar": "الأرجنتين"},
        {"en": "Sweden", "de": "Schweden", "zh": "瑞典", "ru": "Швеция", "ar": "السويد"},
        {"en": "Greece", "de": "Griechenland", "zh": "希腊", "ru": "Греция", "ar": "اليونان"},
        {"en": "Portugal", "de": "Portugal", "zh": "葡萄牙", "ru": "Португалия", "ar": "البرتغال"},
    ),
    "language": (
        {"en": "Italian", "de": "Italienisch", "zh": "意大利语", "ru": "итальянский", "ar": "الإيطالية"},
        {"en": "Spanish", "de": "Spanisch", "zh": "西班牙语", "ru": "испанский", "ar": "الإسبانية"},
        {"en": "Japanese", "de": "Japanisch", "zh": "日语", "ru": "японский", "ar": "اليابانية"},
        {"en": "Portuguese", "de": "Portugiesisch", "zh": "葡萄牙语", "ru": "португальский", "ar": "البرتغالية"},
        {"en": "Swedish", "de": "Schwedisch", "zh": "瑞典语", "ru": "шведский", "ar": "السويدية"},
        {"en": "Turkish", "de": "Türkisch", "zh": "土耳其语", "ru": "турецкий", "ar": "التركية"},
        {"en": "Polish", "de": "Polnisch", "zh": "波兰语", "ru": "польский", "ar": "البولندية"},
        {"en": "Greek", "de": "Griechisch", "zh": "希腊语", "ru": "греческий", "ar": "اليونانية"},
        {"en": "Hindi", "de": "Hindi", "zh": "印地语", "ru": "хинди", "ar": "الهندية"},
        {"en": "Persian", "de": "Persisch", "zh": "波斯语", "ru": "персидский", "ar": "الفارسية"},
        {"en": "Korean", "de": "Koreanisch", "zh": "韩语", "ru": "корейский", "ar": "الكورية"},
        {"en": "Dutch", "de": "Niederländisch", "zh": "荷兰语", "ru": "нидерландский", "ar": "الهولندية"},
    ),
    "occupation": (
        {"en": "a teacher", "de": "Lehrer", "zh": "教师", "ru": "учитель", "ar": "مدرس"},
        {"en": "an engineer", "de": "Ingenieur", "zh": "工程师", "ru": "инженер", "ar": "مهندس"},
        {"en": "a physician", "de": "Arzt", "zh": "医生", "ru": "врач", "ar": "طبيب"},
        {"en": "a lawyer", "de": "Rechtsanwalt", "zh": "律师", "ru": "юрист", "ar": "محامٍ"},
        {"en": "an architect", "de": "Architekt", "zh": "建筑师", "ru": "архитектор", "ar": "مهندس معماري"},
        {"en": "a pharmacist", "de": "Apotheker", "zh": "药剂师", "ru": "фармацевт", "ar": "صيدلي"},
        {"en": "a pilot", "de": "Pilot", "zh": "飞行员", "ru": "пилот", "ar": "طيار"},
        {"en": "a journalist", "de": "Journalist", "zh": "记者", "ru": "журналист", "ar": "صحفي"},
        {"en": "a carpenter", "de": "Tischler", "zh": "木匠", "ru": "плотник", "ar": "نجار"},
        {"en": "a baker", "de": "Bäcker", "zh": "面包师", "ru": "пекарь", "ar": "خباز"},
        {"en": "a painter", "de": "Maler", "zh": "画家", "ru": "художник", "ar": "رسام"},
        {"en": "an accountant", "de": "Buchhalter", "zh": "会计师", "ru": "бухгалтер", "ar": "محاسب"},
    ),
    "instrument": (
        {"en": "violin", "de": "Geige", "zh": "小提琴", "ru": "скрипка", "ar": "الكمان"},
        {"en": "piano", "de": "Klavier", "zh": "钢琴", "ru": "фортепиано", "ar": "البيانو"},
        {"en": "cello", "de": "Cello", "zh": "大提琴", "ru": "виолончель", "ar": "التشيلو"},
        {"en": "flute", "de": "Flöte", "zh": "长笛", "ru": "флейта", "ar": "الفلوت"},
        {"en": "trumpet", "de": "Trompete", "zh": "小号", "ru": "труба", "ar": "البوق"},
        {"en": "guitar", "de": "Gitarre", "zh": "吉他", "ru": "гитара", "ar": "الغيتار"},
        {"en": "harp", "de": "Harfe", "zh": "竖琴", "ru": "арфа", "ar": "القيثارة"},
        {"en": "clarinet", "de": "Klarinette", "zh": "单簧管", "ru": "кларнет", "ar": "الكلارينيت"},
        {"en": "drums", "de": "Schlagzeug", "zh": "架子鼓", "ru": "барабаны", "ar": "الطبول"},
        {"en": "saxophone", "de": "Saxofon", "zh": "萨克斯管", "ru": "саксофон", "ar": "الساكسفون"},
        {"en": "organ", "de": "Orgel", "zh": "管风琴", "ru": "орган", "ar": "الأرغن"},
        {"en": "accordion", "de": "Akkordeon", "zh": "手风琴", "ru": "аккордеон", "ar": "الأكورديون"},
    ),
    "sport": (
        {"en": "tennis", "de": "Tennis", "zh": "网球", "ru": "теннис", "ar": "التنس"},
        {"en": "football", "de": "Fußball", "zh": "足球", "ru": "футбол", "ar": "كرة القدم"},
        {"en": "basketball", "de": "Basketball", "zh": "篮球", "ru": "баскетбол", "ar": "كرة السلة"},
        {"en": "volleyball", "de": "Volleyball", "zh": "排球", "ru": "волейбол", "ar": "الكرة الطائرة"},
        {"en": "handball", "de": "Handball", "zh": "手球", "ru": "гандбол", "ar": "كرة اليد"},
        {"en": "golf", "de": "Golf", "zh": "高尔夫球", "ru": "гольф", "ar": "الغولف"},
        {"en": "ice hockey", "de": "Eishockey", "zh": "冰球", "ru": "хоккей", "ar": "هوكي الجليد"},
        {"en": "cricket", "de": "Cricket", "zh": "板球", "ru": "крикет", "ar": "الكريكيت"},
        {"en": "rugby", "de": "Rugby", "zh": "橄榄球", "ru": "регби", "ar": "الرغبي"},
        {"en": "baseball", "de": "Baseball", "zh": "棒球", "ru": "бейсбол", "ar": "البيسبول"},
        {"en": "badminton", "de": "Badminton", "zh": "羽毛球", "ru": "бадминтон", "ar": "الريشة الطائرة"},
        {"en": "table tennis", "de": "Tischtennis", "zh": "乒乓球", "ru": "настольный теннис", "ar": "كرة الطاولة"},
    ),
    "field": (
        {"en": "physics", "de": "Physik", "zh": "物理学", "ru": "физика", "ar": "الفيزياء"},
        {"en": "chemistry", "de": "Chemie", "zh": "化学", "ru": "химия", "ar": "الكيمياء"},
        {"en": "biology", "de": "Biologie", "zh": "生物学", "ru": "биология", "ar": "علم الأحياء"},
        {"en": "mathematics", "de": "Mathematik", "zh": "数学", "ru": "математика", "ar": "الرياضيات"},
        {"en": "astronomy", "de": "Astronomie", "zh": "天文学", "ru": "астрономия", "ar": "علم الفلك"},
        {"en": "linguistics", "de": "Linguistik", "zh": "语言学", "ru": "лингвистика", "ar": "اللسانيات"},
        {"en": "geology", "de": "Geologie", "zh": "地质学", "ru": "геология", "ar": "الجيولوجيا"},
        {"en": "medicine", "de": "Medizin", "zh": "医学", "ru": "медицина", "ar": "الطب"},
        {"en": "philosophy", "de": "Philosophie", "zh": "哲学", "ru": "философия", "ar": "الفلسفة"},
        {"en": "sociology", "de": "Soziologie", "zh": "社会学", "ru": "социология", "ar": "علم الاجتماع"},
        {"en": "psychology", "de": "Psychologie", "zh": "心理学", "ru": "психология", "ar": "علم النفس"},
        {"en": "economics", "de": "Ökonomie", "zh": "经济学", "ru": "экономика", "ar": "الاقتصاد"},
    ),
}
"""Real-world closed-class objects, per language."""

OPEN_TYPES: Tuple[str, ...] = ("person", "man", "woman", "city", "university", "company", "society", "prize")
"""Types whose entities are generated artificial names."""
