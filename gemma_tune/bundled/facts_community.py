"""Demo fact table, sections 28-40: community life and practicalities.

Cleaning up, the Repair Cafe, classes, volunteering, stewards, the committee, the AGM, contacts,
Wi-Fi, social media, closures, pets, food and drink, and leaving.

One of the parts that `make_demo_data.FACTS` joins, in section order; `fact.py` says what a
fact is. A comment marks each section, and those held out from rag_train.
"""

from __future__ import annotations

from gemma_tune.bundled.fact import Fact

FACTS: tuple[Fact, ...] = (
    # 28. Cleaning Up
    Fact(
        28,
        "cupboard under the stairs",
        (
            "Where are the brooms kept?",
            "Where can I find a vacuum cleaner?",
            "Where are the cleaning tools stored?",
            "Where do the brooms and vacuum cleaners live?",
            "In which cupboard are the brooms kept?",
        ),
    ),
    Fact(
        28,
        "closing sheet",
        (
            "What does the last member out sign?",
            "What must the last person to leave on a weekday sign?",
            "Which sheet is signed at closing time?",
            "What does the last member to leave fill in by the back door?",
            "What document is signed when locking up on weekdays?",
        ),
    ),
    # 29. The Repair Cafe
    Fact(
        29,
        "last Sunday",
        (
            "Which Sunday of the month is the Repair Cafe held?",
            "When is the Repair Cafe held each month?",
            "On what day does the monthly Repair Cafe take place?",
            "Which day of the month is the Repair Cafe?",
            "Which Sunday each month is Repair Cafe day?",
        ),
    ),
    Fact(
        29,
        "1 pm",
        (
            "What time does the Repair Cafe open?",
            "When does the Repair Cafe start?",
            "At what time do the Repair Cafe doors open to the public?",
            "What is the Repair Cafe's start time?",
            "From what time can the public bring items to the Repair Cafe?",
        ),
    ),
    # 30. Classes and Workshops (held out from rag_train)
    Fact(
        30,
        "$25",
        (
            "How much does a class cost for members?",
            "What do members pay per class session?",
            "What is the member price for an evening class?",
            "How much is one class session for a member?",
            "What does a member pay to attend a class?",
        ),
    ),
    Fact(
        30,
        "$40",
        (
            "What do non-members pay for a class?",
            "How much is a class session for someone who isn't a member?",
            "What is the non-member price of a class?",
            "How much does a non-member pay per session?",
            "What does a class cost if you are not a member?",
        ),
    ),
    # 31. Volunteering
    Fact(
        31,
        "10 hours",
        (
            "How many volunteer hours earn a free month of membership?",
            "How much must I volunteer in a quarter to get a free month?",
            "How many hours per quarter must a member volunteer to get a month free?",
            "What is the volunteering threshold for a free month?",
            "How many hours of volunteering in a quarter are needed for free membership?",
        ),
    ),
    Fact(
        31,
        "cork board",
        (
            "Where are volunteer shifts listed?",
            "Where can I see the volunteer shifts?",
            "On what board are volunteer shifts posted?",
            "Where do I find available volunteer shifts?",
            "Which board in the entrance hall lists the volunteer shifts?",
        ),
    ),
    # 32. Stewards
    Fact(
        32,
        "Iris Thornbury",
        (
            "Who is the woodshop lead steward?",
            "Who leads the woodshop stewards?",
            "Who is the current lead steward of the woodshop?",
            "Which steward is responsible for the woodshop?",
            "Who is in charge of the woodshop?",
        ),
    ),
    Fact(
        32,
        "Kofi Ashdown",
        (
            "Who is the lead steward of the metal shop?",
            "Who leads the metal shop?",
            "Who looks after the metal shop as lead steward?",
            "What is the name of the metal shop lead steward?",
            "Who is in charge of the metal shop?",
        ),
    ),
    # 33. The Committee
    Fact(
        33,
        "Rosalind Pike",
        (
            "Who chairs the committee?",
            "Who is the chair of the makerspace committee?",
            "Who is the committee chair?",
            "What is the name of the committee's chair?",
            "Who leads the committee as chair?",
        ),
    ),
    Fact(
        33,
        "Tomasz Wren",
        (
            "Who is the treasurer?",
            "Who is the makerspace's treasurer?",
            "Who holds the role of treasurer on the committee?",
            "What is the treasurer's name?",
            "Who looks after the money as treasurer?",
        ),
    ),
    # 34. The Annual General Meeting
    Fact(
        34,
        "October",
        (
            "In which month is the Annual General Meeting held?",
            "When does the AGM take place?",
            "What month is the AGM?",
            "Which month should members keep free for the Annual General Meeting?",
            "In what month do members meet for the AGM?",
        ),
    ),
    Fact(
        34,
        "Ottermere Library",
        (
            "Where is the Annual General Meeting held?",
            "Where does the AGM take place?",
            "In which building is the AGM held?",
            "Where do members go for the Annual General Meeting?",
            "Whose main hall hosts the AGM?",
        ),
    ),
    # 35. Coordinator and Contacts (held out from rag_train)
    Fact(
        35,
        "Hana Ferreira",
        (
            "Who is the makerspace coordinator?",
            "What is the coordinator's name?",
            "Who works as the part-time coordinator?",
            "Who is the part-time coordinator at Ottermere Makerspace?",
            "Who works at the makerspace from Tuesday to Friday?",
        ),
    ),
    Fact(
        35,
        "hello@ottermere-makers.org",
        (
            "What email address should general questions go to?",
            "Where do I email a general question?",
            "What is the makerspace's general email address?",
            "How can I contact the makerspace by email?",
        ),
    ),
    # 36. Wi-Fi and Computers
    Fact(
        36,
        "OtterNet",
        (
            "What is the Wi-Fi network called?",
            "What is the name of the makerspace Wi-Fi?",
            "Which Wi-Fi network should I join?",
            "What is the Wi-Fi network's name?",
            "What network name does the makerspace Wi-Fi use?",
        ),
    ),
    Fact(
        36,
        "Sunday night",
        (
            "When are files on the shared computers deleted?",
            "When do the shared computers get wiped?",
            "On which night are files cleared from the shared computers?",
            "When do files left on the design room computers disappear?",
            "At what point each week are the shared computers cleared?",
        ),
    ),
    # 37. Photography and Social Media
    Fact(
        37,
        "Friday Showcase",
        (
            "What is the weekly post of member projects called?",
            "Where does the makerspace share member projects each week?",
            "What is the name of the weekly feature showing members' work?",
            "In which feature are member projects posted?",
            "What is the makerspace's weekly showcase of projects called?",
        ),
    ),
    # 38. Holidays and Closures
    Fact(
        38,
        "24 December",
        (
            "When does the winter closure begin?",
            "On what date does the makerspace close for the winter holidays?",
            "What is the first day of the winter closure?",
            "From which date is the makerspace shut for winter?",
            "When does the makerspace close for the winter holidays?",
        ),
    ),
    Fact(
        38,
        "August",
        (
            "In which month is the deep-clean week?",
            "When does the makerspace close for its deep clean?",
            "Which month has the deep-clean closure?",
            "When is the annual deep-clean week?",
            "In what month does the makerspace shut for cleaning?",
        ),
    ),
    # 39. Pets, Food and Drink
    Fact(
        39,
        "entrance hall",
        (
            "Where may dogs wait?",
            "Where are dogs allowed in the makerspace?",
            "Which part of the building can dogs be in?",
            "If I bring my dog, where can it stay?",
            "Where can a dog on a lead wait?",
        ),
    ),
    Fact(
        39,
        "water bottles with lids",
        (
            "What drink containers are allowed in the workshops?",
            "What is the only exception to the no food and drink rule?",
            "Which drink containers may be taken into the woodshop?",
            "What can I drink from in the design room?",
            "What is allowed in the metal shop despite the food and drink ban?",
        ),
    ),
    # 40. Leaving the Makerspace (held out from rag_train)
    Fact(
        40,
        "14 days",
        (
            "How soon must a fob be returned after leaving?",
            "Within how many days of leaving must I return my fob?",
            "What is the deadline for returning a key fob after leaving?",
            "How long do former members have to hand back their fob?",
        ),
    ),
    Fact(
        40,
        "$20",
        (
            "What is the fee for not returning a key fob after leaving?",
            "How much is charged if a leaving member keeps their fob?",
            "What does it cost if I don't return my fob after cancelling?",
            "What is the penalty for an unreturned fob?",
        ),
    ),
)
