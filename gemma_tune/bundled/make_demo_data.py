"""Builds the bundled demo dataset from `handbook.md` and the fact table below.

Run `python -m gemma_tune.bundled.make_demo_data` to regenerate the four JSONL files next to this
module. The output is deterministic (no randomness, no clock, no environment), so a run rewrites
the committed files byte-for-byte; `tests/bundled_data_test.py` checks that it does. Standard
library only.

Each fact is one short answer span that appears verbatim in one handbook section, asked in 4-6
wordings. The rows are Dolly-format JSON lines:

  rag_train.jsonl / rag_validation.jsonl: "closed_qa" rows whose context is the section (with its
    heading). Split by section: every fifth section (5, 10, ..., 40) is held out, so validation
    asks about passages the model never trained on.
  closed_train.jsonl / closed_validation.jsonl: "open_qa" rows with an empty context. Split by
    wording: each fact has one wording held out (fact index modulo its wording count), so
    validation asks known facts in new words.

Rows are ordered by a SHA-256 digest of their text: a stable shuffle that mixes sections and
wordings without depending on Python's random module.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from typing import NamedTuple

HERE = os.path.dirname(os.path.abspath(__file__))
HANDBOOK = os.path.join(HERE, "handbook.md")
HELD_OUT_EVERY = 5  # rag_validation holds sections 5, 10, ..., 40
FILES = ("rag_train.jsonl", "rag_validation.jsonl", "closed_train.jsonl", "closed_validation.jsonl")
_HEADING = re.compile(r"^## (\d+)\. (.+)$")


class Fact(NamedTuple):
    section: int
    answer: str
    questions: tuple[str, ...]


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
    # 9. The Woodshop
    Fact(
        9,
        "two",
        (
            "How many bandsaws does the woodshop have?",
            "How many bandsaws are there in the woodshop?",
            "What is the number of bandsaws in the woodshop?",
            "How many bandsaws can members use?",
        ),
    ),
    Fact(
        9,
        "dust extractor",
        (
            "What must be switched on before starting a woodshop machine?",
            "What has to be turned on before any woodshop machine is used?",
            "Before starting the table saw, what needs to be switched on?",
            "Which piece of equipment must be running before woodshop machines are started?",
            "What should I switch on first before using a machine in the woodshop?",
        ),
    ),
    # 10. The Metal Shop (held out from rag_train)
    Fact(
        10,
        "second inducted member",
        (
            "Who must be in the room when someone is welding?",
            "Who needs to be present in the metal shop while you weld?",
            "Welding is only allowed when who else is in the room?",
            "Whose presence is required before anyone may weld?",
        ),
    ),
    Fact(
        10,
        "skip in the yard",
        (
            "Where do metal offcuts go?",
            "Where should scrap metal offcuts be put?",
            "Where are offcuts from the metal shop thrown away?",
            "What should I put my metal offcuts in?",
            "Where does metal waste from the metal shop belong?",
        ),
    ),
    # 11. The Laser Cutter
    Fact(
        11,
        "60 watts",
        (
            "How powerful is the laser cutter?",
            "What is the power rating of the laser cutter?",
            "What wattage is the laser cutter?",
            "How many watts is the laser cutter rated at?",
            "What is the laser cutter's power?",
        ),
    ),
    Fact(
        11,
        "PVC and vinyl",
        (
            "Which materials must never be cut on the laser cutter?",
            "What materials are banned from the laser cutter?",
            "Which two materials release chlorine gas when laser cut?",
            "What must you never put in the laser cutter?",
            "Which materials are forbidden on the laser cutter?",
        ),
    ),
    # 12. 3D Printers
    Fact(
        12,
        "five",
        (
            "How many 3D printers does the makerspace have?",
            "How many 3D printers are there in the design room?",
            "What is the number of 3D printers available to members?",
            "How many 3D printers can members use?",
            "How many 3D printers are there?",
        ),
    ),
    Fact(
        12,
        "10 cents",
        (
            "How much does 3D printing filament cost per gram?",
            "What is the charge per gram of filament?",
            "How much do members pay for each gram of 3D printer filament?",
            "What is the price of filament per gram?",
            "What does 3D printing cost per gram?",
        ),
    ),
    # 13. The Electronics Bench
    Fact(
        13,
        "front window",
        (
            "Where is the electronics bench?",
            "Which window is the electronics bench next to?",
            "Where in the building is the electronics bench?",
            "Where is the electronics bench located?",
        ),
    ),
    Fact(
        13,
        "four",
        (
            "How many soldering stations are there?",
            "How many soldering stations does the electronics bench have?",
            "What is the number of soldering stations on the electronics bench?",
            "How many people can solder at the electronics bench at once?",
            "How many soldering stations can members use?",
        ),
    ),
    # 14. The Textile Room
    Fact(
        14,
        "six",
        (
            "How many sewing machines does the textile room have?",
            "How many sewing machines are there in the makerspace?",
            "What is the number of sewing machines members can use?",
            "How many sewing machines are in the textile room?",
            "How many sewing machines are available?",
        ),
    ),
    Fact(
        14,
        "first floor",
        (
            "Which floor is the textile room on?",
            "On what floor will I find the textile room?",
            "The textile room is on which floor?",
            "What floor is the textile room located on?",
            "Where in the building is the textile room?",
        ),
    ),
    # 15. Booking Machines (held out from rag_train)
    Fact(
        15,
        "7 days",
        (
            "How far in advance do machine bookings open?",
            "How many days ahead can I book a machine?",
            "How early can members book the laser cutter?",
            "How long before a slot do bookings open?",
        ),
    ),
    Fact(
        15,
        "15 minutes",
        (
            "How late can you be before your booking is released?",
            "After how many minutes of lateness is a booked slot given away?",
            "How long is a booked slot held if I'm running late?",
            "How late may a member arrive before losing their machine booking?",
        ),
    ),
    # 16. Storage and Lockers
    Fact(
        16,
        "$6",
        (
            "How much does it cost to rent a locker?",
            "What is the monthly locker rental fee?",
            "How much is a locker per month?",
            "What do members pay to rent a locker?",
            "What is the price of a locker?",
        ),
    ),
    Fact(
        16,
        "white",
        (
            "What colour tag must go on items on the project shelves?",
            "Which colour of tag do stored projects need?",
            "What colour are the tags for project shelf items?",
            "What colour label has to be attached to a project left on the shelves?",
            "Items on the basement project shelves need what colour tag?",
        ),
    ),
    # 17. The Tool Library
    Fact(
        17,
        "three",
        (
            "How many tool library items can a member borrow at once?",
            "What is the maximum number of tools I can borrow at a time?",
            "How many items may one member have on loan from the tool library at the same time?",
            "What is the borrowing limit at the tool library?",
            "How many tools can I take home from the tool library at once?",
        ),
    ),
    Fact(
        17,
        "one week",
        (
            "How long can tools be borrowed from the tool library?",
            "What is the loan period for the tool library?",
            "For how long may I take a tool home?",
            "How long is a tool library loan?",
            "How long can I keep a borrowed tool?",
        ),
    ),
    # 18. Late Returns and Damage
    Fact(
        18,
        "50 cents",
        (
            "What is the daily late fee for tool library items?",
            "How much is charged per day for a late tool?",
            "What does each overdue tool library item cost per day?",
            "How much is the late fine per item per day?",
            "How much do I pay for each day a borrowed tool is late?",
        ),
    ),
    Fact(
        18,
        "$10",
        (
            "What is the maximum late fee for a tool library item?",
            "What is the cap on tool library late fees?",
            "How much can a late fine for a tool reach at most?",
            "What's the most I can be charged for returning a tool late?",
            "Up to what amount can a tool library late fee grow?",
        ),
    ),
    # 19. The Materials Shop
    Fact(
        19,
        "card only",
        (
            "How do you pay at the materials shop?",
            "What payment does the materials shop accept?",
            "Which payment method does the materials shop take?",
            "What is the only way to pay in the materials shop?",
            "How can members pay for plywood and screws?",
        ),
    ),
    Fact(
        19,
        "cost price",
        (
            "At what price does the materials shop sell its stock?",
            "How are materials in the shop priced?",
            "What price do members pay for plywood and acrylic in the shop?",
            "At what price are screws and glue sold?",
        ),
    ),
    # 20. Guests (held out from rag_train)
    Fact(
        20,
        "two",
        (
            "How many guests may a member bring per visit?",
            "What is the limit on guests for each visit?",
            "How many friends can I bring along on a visit?",
            "Up to how many guests are allowed per member visit?",
            "How many visitors can one member bring?",
        ),
    ),
    Fact(
        20,
        "$5",
        (
            "How much is the guest donation?",
            "What donation is asked of each guest?",
            "How much should a guest give when visiting?",
            "What amount does each guest donate?",
            "How much money goes to the tool fund for each guest?",
        ),
    ),
    # 21. Children and Young Makers
    Fact(
        21,
        "16",
        (
            "Under what age must children be accompanied by a parent or guardian?",
            "Below which age does a child need a member guardian with them?",
            "At what age can a young person visit without a parent?",
            "What is the age limit below which children must come with a parent?",
            "Children younger than what age need to be accompanied?",
        ),
    ),
    Fact(
        21,
        "Saturday mornings",
        (
            "When does the Young Makers club meet?",
            "At what time of the week does the Young Makers club get together?",
            "When can children attend the Young Makers club?",
            "When are Young Makers club sessions held during school term?",
        ),
    ),
    # 22. Protective Equipment
    Fact(
        22,
        "steel cabinet",
        (
            "Where are dust masks kept?",
            "Where can I find a dust mask?",
            "In which cabinet are the dust masks stored?",
            "Where do I get a dust mask from?",
            "What are dust masks kept in?",
        ),
    ),
    Fact(
        22,
        "open-toed shoes",
        (
            "What kind of footwear is not allowed in the workshops?",
            "Which shoes are banned in workshop areas?",
            "What footwear may members not wear in a workshop?",
            "What type of shoe is forbidden in any workshop area?",
            "What shoes should I not wear in the workshop?",
        ),
    ),
    # 23. First Aid
    Fact(
        23,
        "woodshop sink",
        (
            "Where is the eye wash station?",
            "Where can I find the eye wash station?",
            "What is the eye wash station next to?",
            "Which sink is the eye wash station next to?",
            "Where is the eye wash located?",
        ),
    ),
    Fact(
        23,
        "red",
        (
            "What colour is the accident book?",
            "Which colour book are accidents recorded in?",
            "In what colour book must every accident be written?",
            "What colour is the book for logging accidents?",
            "The accident book is what colour?",
        ),
    ),
    # 24. Fire Safety
    Fact(
        24,
        "Monday",
        (
            "On which day is the fire alarm tested?",
            "What day of the week is the fire alarm test?",
            "Which weekday should I expect the fire alarm test?",
            "On what day does the weekly fire alarm test happen?",
            "Which day is fire alarm testing day?",
        ),
    ),
    Fact(
        24,
        "St Aldric's Church",
        (
            "Which church car park is the fire assembly point?",
            "At which church do members gather after an evacuation?",
            "Where is the fire assembly point?",
            "Where should everyone gather if the building is evacuated?",
            "In whose car park is the assembly point?",
        ),
    ),
    # 25. Parking and Bikes (held out from rag_train)
    Fact(
        25,
        "eight",
        (
            "How many parking spaces does the makerspace have?",
            "How many car parking spaces are behind the building?",
            "What is the number of parking spaces at the makerspace?",
            "How many cars can park behind the makerspace?",
        ),
    ),
    Fact(
        25,
        "20 minutes",
        (
            "How long may delivery vans use the loading bay?",
            "What is the time limit in the loading bay?",
            "How long can a van stay in the loading bay?",
            "For how many minutes may a delivery van park in the loading bay?",
        ),
    ),
    # 26. The Kitchen
    Fact(
        26,
        "Friday evening",
        (
            "When is the kitchen fridge emptied?",
            "When does the fridge get cleared out?",
            "At what point in the week is the members' fridge emptied?",
            "On which evening is the kitchen fridge emptied?",
            "When is the fridge in the members' kitchen cleaned out?",
        ),
    ),
    Fact(
        26,
        "textile room",
        (
            "Which room is the kitchen next to?",
            "What room is beside the members' kitchen?",
            "The members' kitchen is next to which room?",
            "Which room neighbours the kitchen on the first floor?",
        ),
    ),
    # 27. Noise
    Fact(
        27,
        "8 pm",
        (
            "After what time are loud machines banned?",
            "What time is the cut-off for using loud machines?",
            "Until when can I use the planer in the evening?",
            "What is the latest time the air compressor may be used?",
            "From what time in the evening must loud machines stay off?",
        ),
    ),
    Fact(
        27,
        "design room",
        (
            "Which room is a quiet space at all times?",
            "Where should members always keep quiet?",
            "Which room must be treated as a quiet space?",
            "Which part of the makerspace is always a quiet space?",
            "In which room is noise never welcome?",
        ),
    ),
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


def read_sections(handbook: str = HANDBOOK) -> dict[int, str]:
    """The handbook's sections by number, each as `## N. Title`, a blank line and its text."""
    with open(handbook, encoding="utf-8") as f:
        lines = f.read().splitlines()
    sections: dict[int, list[str]] = {}
    current = None
    for line in lines:
        match = _HEADING.match(line)
        if match:
            current = int(match.group(1))
            if current in sections:
                raise ValueError(f"{handbook}: section {current} appears twice")
            sections[current] = [line]
        elif current is not None:
            sections[current].append(line)
    texts = {number: "\n".join(body).strip() for number, body in sections.items()}
    if sorted(texts) != list(range(1, len(texts) + 1)):
        raise ValueError(f"{handbook}: sections are not numbered 1..N: {sorted(texts)}")
    return texts


def is_held_out(section: int) -> bool:
    """Whether a section belongs to rag_validation (every HELD_OUT_EVERY-th one)."""
    return section % HELD_OUT_EVERY == 0


def held_out_wording(index: int, fact: Fact) -> int:
    """Which of a fact's wordings goes to closed_validation: rotates over the facts."""
    return index % len(fact.questions)


def contains_span(text: str, answer: str) -> bool:
    """Whether `answer` occurs in `text` as whole words ("5 pm" is not in "8:45 pm")."""
    return re.search(rf"(?<!\w){re.escape(answer)}(?!\w)", text) is not None


def check(sections: dict[int, str], facts: tuple[Fact, ...] = FACTS) -> None:
    """Raises ValueError if the table does not fit the handbook or repeats a question."""
    seen: set[str] = set()
    for fact in facts:
        if fact.section not in sections:
            raise ValueError(f"fact {fact.answer!r}: no section {fact.section}")
        body = sections[fact.section].split("\n", 1)[1]
        if not contains_span(body, fact.answer):
            raise ValueError(f"{fact.answer!r} is not in section {fact.section}")
        if not 4 <= len(fact.questions) <= 6:
            raise ValueError(f"{fact.answer!r}: {len(fact.questions)} wordings, want 4-6")
        for question in fact.questions:
            if question in seen:
                raise ValueError(f"question asked twice: {question!r}")
            seen.add(question)
    missing = set(sections) - {fact.section for fact in facts}
    if missing:
        raise ValueError(f"sections without a fact: {sorted(missing)}")


def _row(question: str, context: str, answer: str, category: str) -> dict[str, str]:
    return {"instruction": question, "context": context, "response": answer, "category": category}


def _stable_order(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """Rows sorted by a digest of their text: a shuffle that never changes between runs."""

    def key(row: dict[str, str]) -> str:
        text = "\n".join((row["instruction"], row["context"], row["response"]))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    return sorted(rows, key=key)


def build_rows(handbook: str = HANDBOOK) -> dict[str, list[dict[str, str]]]:
    """The rows of each output file, by file name."""
    sections = read_sections(handbook)
    check(sections)
    out: dict[str, list[dict[str, str]]] = {name: [] for name in FILES}
    for index, fact in enumerate(FACTS):
        context = sections[fact.section]
        rag = "rag_validation.jsonl" if is_held_out(fact.section) else "rag_train.jsonl"
        held = held_out_wording(index, fact)
        for i, question in enumerate(fact.questions):
            out[rag].append(_row(question, context, fact.answer, "closed_qa"))
            closed = "closed_validation.jsonl" if i == held else "closed_train.jsonl"
            out[closed].append(_row(question, "", fact.answer, "open_qa"))
    return {name: _stable_order(rows) for name, rows in out.items()}


def write_all(output_dir: str, handbook: str = HANDBOOK) -> dict[str, int]:
    """Writes the four JSONL files into `output_dir`; returns the row count of each."""
    os.makedirs(output_dir, exist_ok=True)
    counts = {}
    for name, rows in build_rows(handbook).items():
        with open(os.path.join(output_dir, name), "w", encoding="utf-8", newline="\n") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        counts[name] = len(rows)
    return counts


def main() -> None:
    for name, count in write_all(HERE).items():
        print(f"{name}: {count} rows")


if __name__ == "__main__":
    main()
