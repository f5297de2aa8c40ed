"""Demo fact table, sections 9-17: the workshops and their equipment.

The woodshop, metal shop, laser cutter, 3D printers, electronics bench and textile room, booking
machines, storage and lockers, and the tool library.

One of the parts that `make_demo_data.FACTS` joins, in section order; `fact.py` says what a
fact is. A comment marks each section, and those held out from rag_train.
"""

from __future__ import annotations

from gemma_tune.bundled.fact import Fact

FACTS: tuple[Fact, ...] = (
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
)
