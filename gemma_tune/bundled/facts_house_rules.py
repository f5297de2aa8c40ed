"""Demo fact table, sections 18-27: house rules.

Late returns and damage, the materials shop, guests, children, protective equipment, first aid,
fire safety, parking and bikes, the kitchen, and noise.

One of the parts that `make_demo_data.FACTS` joins, in section order; `fact.py` says what a
fact is. A comment marks each section, and those held out from rag_train.
"""

from __future__ import annotations

from gemma_tune.bundled.fact import Fact

FACTS: tuple[Fact, ...] = (
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
)
