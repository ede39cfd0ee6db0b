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


def _forms(table: str) -> Tuple[Dict[str, str], ...]:
    """Rows of ``" | "``-separated forms (one per language, LANGUAGES order) -> dicts."""
    return tuple(dict(zip(LANGUAGES, (f.strip() for f in line.split("|")))) for line in table.strip().splitlines())


# Closed-class entities: per-language forms that fit the template slots above, one per line in
# LANGUAGES order, separated by " | ".
CLOSED_ENTITIES: Dict[str, Tuple[Dict[str, str], ...]] = {
    "country": _forms("""
        France | Frankreich | 法国 | Франция | فرنسا
        Italy | Italien | 意大利 | Италия | إيطاليا
        Spain | Spanien | 西班牙 | Испания | إسبانيا
        Japan | Japan | 日本 | Япония | اليابان
        Brazil | Brasilien | 巴西 | Бразилия | البرازيل
        Canada | Kanada | 加拿大 | Канада | كندا
        Egypt | Ägypten | 埃及 | Египет | مصر
        India | Indien | 印度 | Индия | الهند
        Mexico | Mexiko | 墨西哥 | Мексика | المكسيك
        Norway | Norwegen | 挪威 | Норвегия | النرويج
        Poland | Polen | 波兰 | Польша | بولندا
        Kenya | Kenia | 肯尼亚 | Кения | كينيا
        Argentina | Argentinien | 阿根廷 | Аргентина | الأرجنتين
        Sweden | Schweden | 瑞典 | Швеция | السويد
        Greece | Griechenland | 希腊 | Греция | اليونان
        Portugal | Portugal | 葡萄牙 | Португалия | البرتغال
    """),
    "language": _forms("""
        Italian | Italienisch | 意大利语 | итальянский | الإيطالية
        Spanish | Spanisch | 西班牙语 | испанский | الإسبانية
        Japanese | Japanisch | 日语 | японский | اليابانية
        Portuguese | Portugiesisch | 葡萄牙语 | португальский | البرتغالية
        Swedish | Schwedisch | 瑞典语 | шведский | السويدية
        Turkish | Türkisch | 土耳其语 | турецкий | التركية
        Polish | Polnisch | 波兰语 | польский | البولندية
        Greek | Griechisch | 希腊语 | греческий | اليونانية
        Hindi | Hindi | 印地语 | хинди | الهندية
        Persian | Persisch | 波斯语 | персидский | الفارسية
        Korean | Koreanisch | 韩语 | корейский | الكورية
        Dutch | Niederländisch | 荷兰语 | нидерландский | الهولندية
    """),
    "occupation": _forms("""
        a teacher | Lehrer | 教师 | учитель | مدرس
        an engineer | Ingenieur | 工程师 | инженер | مهندس
        a physician | Arzt | 医生 | врач | طبيب
        a lawyer | Rechtsanwalt | 律师 | юрист | محامٍ
        an architect | Architekt | 建筑师 | архитектор | مهندس معماري
        a pharmacist | Apotheker | 药剂师 | фармацевт | صيدلي
        a pilot | Pilot | 飞行员 | пилот | طيار
        a journalist | Journalist | 记者 | журналист | صحفي
        a carpenter | Tischler | 木匠 | плотник | نجار
        a baker | Bäcker | 面包师 | пекарь | خباز
        a painter | Maler | 画家 | художник | رسام
        an accountant | Buchhalter | 会计师 | бухгалтер | محاسب
    """),
    "instrument": _forms("""
        violin | Geige | 小提琴 | скрипка | الكمان
        piano | Klavier | 钢琴 | фортепиано | البيانو
        cello | Cello | 大提琴 | виолончель | التشيلو
        flute | Flöte | 长笛 | флейта | الفلوت
        trumpet | Trompete | 小号 | труба | البوق
        guitar | Gitarre | 吉他 | гитара | الغيتار
        harp | Harfe | 竖琴 | арфа | القيثارة
        clarinet | Klarinette | 单簧管 | кларнет | الكلارينيت
        drums | Schlagzeug | 架子鼓 | барабаны | الطبول
        saxophone | Saxofon | 萨克斯管 | саксофон | الساكسفون
        organ | Orgel | 管风琴 | орган | الأرغن
        accordion | Akkordeon | 手风琴 | аккордеон | الأكورديون
    """),
    "sport": _forms("""
        tennis | Tennis | 网球 | теннис | التنس
        football | Fußball | 足球 | футбол | كرة القدم
        basketball | Basketball | 篮球 | баскетбол | كرة السلة
        volleyball | Volleyball | 排球 | волейбол | الكرة الطائرة
        handball | Handball | 手球 | гандбол | كرة اليد
        golf | Golf | 高尔夫球 | гольф | الغولف
        ice hockey | Eishockey | 冰球 | хоккей | هوكي الجليد
        cricket | Cricket | 板球 | крикет | الكريكيت
        rugby | Rugby | 橄榄球 | регби | الرغبي
        baseball | Baseball | 棒球 | бейсбол | البيسبول
        badminton | Badminton | 羽毛球 | бадминтон | الريشة الطائرة
        table tennis | Tischtennis | 乒乓球 | настольный теннис | كرة الطاولة
    """),
    "field": _forms("""
        physics | Physik | 物理学 | физика | الفيزياء
        chemistry | Chemie | 化学 | химия | الكيمياء
        biology | Biologie | 生物学 | биология | علم الأحياء
        mathematics | Mathematik | 数学 | математика | الرياضيات
        astronomy | Astronomie | 天文学 | астрономия | علم الفلك
        linguistics | Linguistik | 语言学 | лингвистика | اللسانيات
        geology | Geologie | 地质学 | геология | الجيولوجيا
        medicine | Medizin | 医学 | медицина | الطب
        philosophy | Philosophie | 哲学 | философия | الفلسفة
        sociology | Soziologie | 社会学 | социология | علم الاجتماع
        psychology | Psychologie | 心理学 | психология | علم النفس
        economics | Ökonomie | 经济学 | экономика | الاقتصاد
    """),
}
"""Real-world closed-class objects, per language."""

OPEN_TYPES: Tuple[str, ...] = ("person", "man", "woman", "city", "university", "company", "society", "prize")
"""Types whose entities are generated artificial names."""
