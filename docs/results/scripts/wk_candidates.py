import json
caps = [("the United Kingdom","London"),("Ireland","Dublin"),("Sweden","Stockholm"),("Poland","Warsaw"),
("Austria","Vienna"),("the Netherlands","Amsterdam"),("Belgium","Brussels"),("Thailand","Bangkok"),
("South Korea","Seoul"),("Indonesia","Jakarta"),("the Philippines","Manila"),("Vietnam","Hanoi"),
("Cuba","Havana"),("Colombia","Bogotá|Bogota"),("Chile","Santiago"),("Iran","Tehran"),("Iraq","Baghdad"),
("Denmark","Copenhagen"),("Finland","Helsinki"),("Hungary","Budapest"),("the Czech Republic","Prague"),
("Ukraine","Kyiv|Kiev"),("Saudi Arabia","Riyadh"),("Pakistan","Islamabad"),("Nigeria","Abuja"),
("Ethiopia","Addis Ababa"),("Afghanistan","Kabul"),("Venezuela","Caracas"),("Romania","Bucharest"),
("the United States","Washington"),("Bangladesh","Dhaka"),("Morocco","Rabat"),("Scotland","Edinburgh"),
("Israel","Jerusalem"),("Syria","Damascus"),("Lebanon","Beirut"),
("Switzerland","Bern|Berne"),("New Zealand","Wellington"),("Malaysia","Kuala Lumpur"),("Nepal","Kathmandu"),("Qatar","Doha"),("Jamaica","Kingston"),("Bulgaria","Sofia"),("Serbia","Belgrade"),("Croatia","Zagreb"),("Slovakia","Bratislava"),("Estonia","Tallinn"),("Latvia","Riga"),("Lithuania","Vilnius"),("Iceland","Reykjavik|Reykjavík"),("Ghana","Accra"),("Uganda","Kampala"),("Jordan","Amman"),("Wales","Cardiff"),("Cambodia","Phnom Penh"),("Mongolia","Ulaanbaatar|Ulan Bator")]
books = [("Moby-Dick","Herman Melville|Melville"),("The Great Gatsby","F. Scott Fitzgerald|Fitzgerald"),
("Harry Potter and the Philosopher's Stone","J. K. Rowling|J.K. Rowling|Rowling"),("The Hobbit","J. R. R. Tolkien|J.R.R. Tolkien|Tolkien"),
("The Lord of the Rings","J. R. R. Tolkien|J.R.R. Tolkien|Tolkien"),("Frankenstein","Mary Shelley|Shelley"),
("Macbeth","William Shakespeare|Shakespeare"),("Othello","William Shakespeare|Shakespeare"),
("Crime and Punishment","Fyodor Dostoevsky|Dostoevsky|Dostoyevsky"),("Anna Karenina","Leo Tolstoy|Tolstoy"),
("A Christmas Carol","Charles Dickens|Dickens"),("Great Expectations","Charles Dickens|Dickens"),
("The Iliad","Homer"),("Animal Farm","George Orwell|Orwell"),("Adventures of Huckleberry Finn","Mark Twain|Twain"),
("the Sherlock Holmes stories","Arthur Conan Doyle|Conan Doyle"),("Dracula","Bram Stoker|Stoker"),
("Les Misérables","Victor Hugo|Hugo"),("The Divine Comedy","Dante Alighieri|Dante"),("To Kill a Mockingbird","Harper Lee"),
("The Old Man and the Sea","Ernest Hemingway|Hemingway"),("Alice's Adventures in Wonderland","Lewis Carroll|Carroll"),
("Robinson Crusoe","Daniel Defoe|Defoe"),("Gulliver's Travels","Jonathan Swift|Swift"),("Jane Eyre","Charlotte Brontë|Charlotte Bronte|Brontë|Bronte"),
("Wuthering Heights","Emily Brontë|Emily Bronte|Brontë|Bronte"),("Treasure Island","Robert Louis Stevenson|Stevenson"),
("The Time Machine","H. G. Wells|H.G. Wells|Wells"),("The Raven","Edgar Allan Poe|Poe"),("The Communist Manifesto","Karl Marx|Marx"),
("A Tale of Two Cities","Charles Dickens|Dickens"),("The Catcher in the Rye","J. D. Salinger|J.D. Salinger|Salinger"),
("Brave New World","Aldous Huxley|Huxley"),("The Adventures of Pinocchio","Carlo Collodi|Collodi")]
other = [("Who painted the ceiling of the Sistine Chapel?","Michelangelo"),("Who composed The Magic Flute?","Mozart"),
("What is the largest country in the world by area?","Russia"),("In which country is the Statue of Liberty?","United States|USA|America"),
("In which city is Big Ben?","London"),("In which country is the Great Wall?","China"),("In which city is the Brandenburg Gate?","Berlin"),
("In which country is the Sydney Opera House?","Australia"),("What is the chemical symbol for water?","H2O"),
("Which animal is known as the king of the jungle?","lion"),("What is the freezing point of water in degrees Celsius?","0|zero"),
("Who wrote the theory of evolution by natural selection?","Charles Darwin|Darwin"),("What is the largest mammal?","blue whale|whale"),
("What colour is the sky on a clear day?","blue"),("Which planet do we live on?","Earth"),
("Who was the first president of South Africa elected in a fully democratic election?","Nelson Mandela|Mandela"),
("Who invented the light bulb?","Thomas Edison|Edison"),("What is the capital city of the state of California?","Sacramento"),
("Which country is famous for the city of Venice?","Italy"),("What language is spoken in France?","French")]
rows=[]
for i,(c,a) in enumerate(caps): rows.append({"prompt":f"What is the capital of {c}?","answers":a.split("|"),"topic":"capital"})
for b,a in books: rows.append({"prompt":f"Who wrote {b}?","answers":a.split("|"),"topic":"author"})
for q,a in other: rows.append({"prompt":q,"answers":a.split("|"),"topic":"general"})
with open("runs/exp/wk_candidates.jsonl","w") as f:
    for i,r in enumerate(rows): f.write(json.dumps({"id":f"wk-{i:03d}",**r},ensure_ascii=False)+"\n")
print(len(rows))
