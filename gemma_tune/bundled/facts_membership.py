"""Demo fact table, sections 1-8: the makerspace and its membership.

About the makerspace, opening hours, membership options, concession rates, joining, key fobs,
safety inductions and induction stickers.

One of the parts that `make_demo_data.FACTS` joins, in section order; `fact.py` says what a
fact is. A comment marks each section, and those held out from rag_train.
"""

from __future__ import annotations

from gemma_tune.bundled.fact import Fact

FACTS: tuple[Fact, ...] = (
    # 1. About Ottermere Makerspace
    Fact(
        1,
        "14 Kettle Lane",
        (
            "What is the street address of Ottermere Makerspace?",
            "Where is Ottermere Makerspace located?",
            "At what address will I find the makerspace?",
            "What is the makerspace's address?",
            "Which street address should I head to for Ottermere Makerspace?",
        ),
    ),
    Fact(
        1,
        "2011",
        (
            "In what year was Ottermere Makerspace founded?",
            "When was the makerspace founded?",
            "Which year was Ottermere Makerspace set up?",
            "What year did the founding volunteers start the makerspace?",
            "Since what year has Ottermere Makerspace existed?",
        ),
    ),
    # 2. Opening Hours
    Fact(
        2,
        "10 am",
        (
            "What time does the makerspace open on weekdays?",
            "When does the workshop open from Monday to Friday?",
            "On a weekday, what time do the doors open?",
            "What is the weekday opening time?",
            "How early can I get into the workshop on a weekday?",
        ),
    ),
    Fact(
        2,
        "5 pm",
        (
            "What time does the makerspace close on Saturdays?",
            "When does the workshop shut on a Saturday?",
            "How late is the makerspace open on Saturdays?",
            "What is the Saturday closing time?",
        ),
    ),
    # 3. Membership Options
    Fact(
        3,
        "$38",
        (
            "How much is Standard membership per month?",
            "What is the monthly fee for Standard membership?",
            "What does a Standard member pay each month?",
            "How much does a Standard membership cost a month?",
            "What's the monthly price of the Standard membership option?",
        ),
    ),
    Fact(
        3,
        "$55",
        (
            "How much does Keyholder membership cost per month?",
            "What is the monthly price of Keyholder membership?",
            "What do Keyholder members pay every month?",
            "If I want evening access with a night fob, how much is the monthly fee?",
            "How much is a Keyholder membership a month?",
            "What does the Keyholder option cost each month?",
        ),
    ),
    # 4. Concession Rates
    Fact(
        4,
        "$22",
        (
            "What is the monthly concession rate?",
            "How much do students pay per month to be members?",
            "How much is a concession membership a month?",
            "What does a member on the concession rate pay monthly?",
            "What is the monthly fee for someone receiving unemployment support?",
        ),
    ),
    Fact(
        4,
        "65",
        (
            "From what age do older people qualify for the concession rate?",
            "At what age can seniors get the concession rate?",
            "How old must an older member be to pay the concession rate?",
            "What is the minimum age for the senior concession?",
        ),
    ),
    # 5. Joining and Your First Visit (held out from rag_train)
    Fact(
        5,
        "Wednesday",
        (
            "On which day are welcome tours held?",
            "What day of the week do the welcome tours run?",
            "Which weekday is the welcome tour for new members on?",
            "When in the week can a new member take the welcome tour?",
        ),
    ),
    Fact(
        5,
        "grey",
        (
            "What colour lanyard do new members wear?",
            "Which colour of lanyard shows that someone is a new member?",
            "What colour is the lanyard worn before a member's first induction?",
            "What is the colour of a new member's lanyard?",
            "Before their first induction, what colour lanyard does a member wear?",
        ),
    ),
    # 6. Key Fobs
    Fact(
        6,
        "black",
        (
            "What colour is the night fob?",
            "What colour fob do Keyholders receive?",
            "Which fob colour shows that someone is a Keyholder?",
            "What colour are Keyholder fobs?",
            "A Keyholder's night fob is what colour?",
        ),
    ),
    Fact(
        6,
        "$8",
        (
            "How much does it cost to replace a lost fob?",
            "What is the fee for a replacement key fob?",
            "If I lose my fob, how much will I pay for a new one?",
            "What does a replacement fob cost?",
            "How much is charged to replace a lost key fob?",
        ),
    ),
    # 7. Safety Inductions
    Fact(
        7,
        "four",
        (
            "How many people can take an induction together?",
            "What is the maximum group size for an induction?",
            "How many members fit in one induction group?",
            "Up to how many people are taught in an induction session?",
            "What is the largest number of people a steward inducts at once?",
        ),
    ),
    Fact(
        7,
        "three years",
        (
            "How long is an induction valid?",
            "For how long does a machine induction remain valid?",
            "How long does a passed induction stay valid before it must be renewed?",
            "What is the validity period of a safety induction?",
            "Once I pass an induction, how long does it count for?",
        ),
    ),
    # 8. Induction Stickers
    Fact(
        8,
        "green",
        (
            "What colour sticker shows a woodshop induction?",
            "Which sticker colour means a member is inducted for the woodshop?",
            "What colour is the woodshop induction sticker?",
            "If I pass the woodshop induction, what colour sticker goes on my card?",
            "Which colour stands for the woodshop on a membership card?",
        ),
    ),
    Fact(
        8,
        "purple",
        (
            "What colour is the laser cutter sticker?",
            "Which colour sticker means someone is inducted on the laser cutter?",
            "What sticker colour stands for the laser cutter?",
            "What colour sticker do inducted laser cutter users have on their card?",
            "Which colour marks a laser cutter induction?",
        ),
    ),
)
